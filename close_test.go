package ustack_test

import (
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/ustack/ustack"
)

// TestCloseReleasesGoroutines uses both stacks of a pair (TCP, UDP, a
// listener with a blocked Accept, a blocked Read) and checks that closing
// them brings the goroutine count back to where it was.
func TestCloseReleasesGoroutines(t *testing.T) {
	before := settledGoroutines(0)
	a, b, err := ustack.NewPair(ustack.Config{}, ustack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := b.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := a.Dial("tcp", net.JoinHostPort(addrB4, itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("Accept failed")
	}
	go io.Copy(s, s) // echo until the stack goes away
	roundTrip(t, c, "hello")
	blockedAccept := make(chan error, 1)
	go func() { _, err := ln.Accept(); blockedAccept <- err }()
	blockedRead := make(chan error, 1)
	pc, err := a.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _, err := pc.ReadFrom(make([]byte, 10)); blockedRead <- err }()
	time.Sleep(20 * time.Millisecond)

	if err := a.Close(); err != nil {
		t.Errorf("closing a: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("closing b: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Blocked calls on a closed stack return.
	for name, ch := range map[string]chan error{"Accept": blockedAccept, "ReadFrom": blockedRead} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s on a closed stack returned no error", name)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s still blocked 5s after the stack was closed", name)
		}
	}
	// A conn of a closed stack fails at once rather than waiting.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("Read on a conn of a closed stack: %v, want an error at once", err)
	}
	if after := settledGoroutines(before); after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before the pair, %d after closing it:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// settledGoroutines polls the goroutine count for up to 5s until it is at
// most want (or, with want 0, until it stops changing) and returns it.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if want > 0 && m <= want || want == 0 && m == n {
			return m
		}
		n = m
	}
	return n
}
