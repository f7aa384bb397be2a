package ustack_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testwait"
)

// TestCloseReleasesGoroutines uses both stacks of a pair (TCP, UDP, a
// listener with a blocked Accept, a blocked Read) and checks that closing
// them brings the goroutine count back to where it was.
func TestCloseReleasesGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
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
	testwait.For(t, "Accept and ReadFrom to block", func() bool { return ustack.BlockedReading(ln) && ustack.BlockedReading(pc) })

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
	goroutinesBackTo(t, before, "the pair")
}

// goroutinesBackTo fails t unless the number of goroutines comes back to
// at most before, the count before what was made and closed, listing the
// goroutines that are left.
func goroutinesBackTo(t *testing.T, before int, what string) {
	t.Helper()
	err := testwait.Until(t.Context(), "the goroutines of "+what+" to end", func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
	if err != nil {
		buf := make([]byte, 1<<20)
		t.Errorf("%v:\n%s", err, buf[:runtime.Stack(buf, true)])
	}
}
