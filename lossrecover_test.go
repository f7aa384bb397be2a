package ustack_test

import (
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/cc"
)

// TestLossRecovery: over a pair whose ends each drop 1% of the frames they
// send, 8 MiB arrive intact with the default congestion control and with
// every algorithm of package cc, within a minute: loss recovery never
// leaves a connection stuck. For cubic this is the regression test of the
// pinned netstack's CUBIC, which stalled here for good (BENCHMARKS.md).
func TestLossRecovery(t *testing.T) {
	for _, cc := range append([]string{""}, cc.Names()...) {
		name := cc
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			// The stack's default, and each algorithm chosen for the
			// connection alone (the Go API's TCP_CONGESTION).
			opts := ustack.TCPOptions{}
			a, b, err := ustack.NewPair(
				ustack.Config{TCP: opts, LinkLoss: ustack.LinkLoss{Fraction: 0.01, Seed: 1}},
				ustack.Config{TCP: opts, LinkLoss: ustack.LinkLoss{Fraction: 0.01, Seed: 2}})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			defer b.Close()
			ln, err := b.Listen("tcp4", ":7070")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			const n = 8 << 20
			got := make(chan [32]byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					close(got)
					return
				}
				defer c.Close()
				h := sha256.New()
				io.Copy(h, c)
				var sum [32]byte
				copy(sum[:], h.Sum(nil))
				got <- sum
			}()
			c, err := a.Dial("tcp4", net.JoinHostPort(b.Addrs()[0].Addr().String(), "7070"))
			if err != nil {
				t.Fatal(err)
			}
			tc := c.(*ustack.TCPConn)
			if cc != "" {
				if err := tc.SetCongestionControl(cc); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := tc.CongestionControl(); cc != "" && got != cc {
				t.Fatalf("the connection's congestion control is %q, want %q", got, cc)
			}
			c.SetDeadline(time.Now().Add(time.Minute))
			h := sha256.New()
			if _, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(stream(3, n), n)); err != nil {
				t.Fatalf("sending %d bytes over a lossy link: %v (stalled?)", n, err)
			}
			c.(interface{ CloseWrite() error }).CloseWrite()
			select {
			case sum := <-got:
				if sum != [32]byte(h.Sum(nil)) {
					t.Fatal("the receiver's SHA-256 differs")
				}
			case <-time.After(time.Minute):
				t.Fatal("the receiver did not get everything within a minute (stalled?)")
			}
			_, info := tc.CongestionControl()
			c.Close()
			t.Logf("%s: %d frames lost; %s", name, a.Lost()+b.Lost(), info)
		})
	}
}
