package ustack_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testdns"
)

// TestPartialDeadline: each of the addresses left gets an equal share of
// the time left, at least 2 s while that much is left, as in net.Dialer.
func TestPartialDeadline(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		left     time.Duration
		addrs    int
		want     time.Duration // from now
		timedOut bool
	}{
		{"one address gets all", 10 * time.Second, 1, 10 * time.Second, false},
		{"equal shares", 10 * time.Second, 2, 5 * time.Second, false},
		{"equal shares of odd time", 9 * time.Second, 3, 3 * time.Second, false},
		{"share raised to the 2s floor", 5 * time.Second, 4, 2 * time.Second, false},
		{"less than the floor left: all of it", 1500 * time.Millisecond, 3, 1500 * time.Millisecond, false},
		{"exactly the floor", 2 * time.Second, 2, 2 * time.Second, false},
		{"deadline now", 0, 2, 0, true},
		{"deadline passed", -time.Second, 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ustack.PartialDeadline(now, now.Add(tc.left), tc.addrs)
			if tc.timedOut {
				var ne net.Error
				if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("partialDeadline with %v left: %v, %v; want a timeout", tc.left, got, err)
				}
				return
			}
			if err != nil || got.Sub(now) != tc.want {
				t.Fatalf("partialDeadline(%v left, %d addresses) = now+%v, %v; want now+%v", tc.left, tc.addrs, got.Sub(now), err, tc.want)
			}
		})
	}
}

// TestDialContextAddresses: a name with several addresses is dialled as
// net.Dialer dials it. Stack a resolves names through a DNS server on
// stack b; 192.0.2.1 is routed to b, which does not forward, so a SYN to
// it is never answered.
func TestDialContextAddresses(t *testing.T) {
	addrB := netip.MustParseAddr("10.0.9.2")
	a, b := newPair(t, ustack.Config{DNS: []netip.Addr{addrB}, Gateways: []netip.Addr{addrB}}, ustack.Config{})
	pc, err := b.ListenPacket("udp4", ":53")
	if err != nil {
		t.Fatal(err)
	}
	blackhole := netip.MustParseAddr("192.0.2.1")
	testdns.Serve(t, pc, map[string][]netip.Addr{
		"dead-first.test.": {blackhole, addrB},
		"dead.test.":       {blackhole},
	})
	ln, err := b.Listen("tcp4", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	for _, tc := range []struct {
		name    string
		host    string
		timeout time.Duration
		// The dial succeeds after the first address's share of the
		// time, or fails with a timeout when the whole time is up.
		connects bool
		atLeast  time.Duration
	}{
		// 3 s for two addresses: 1.5 s each is below the floor, so the
		// dead first address gets 2 s and the second the 1 s left.
		{"dead first address gets its share, then the next answers", "dead-first.test", 3 * time.Second, true, 2 * time.Second},
		{"dead only address uses the whole time", "dead.test", 300 * time.Millisecond, false, 300 * time.Millisecond},
		{"deadline passed before the lookup", "dead-first.test", -time.Second, false, 0},
		{"deadline passed before the attempt", "10.0.9.2", -time.Second, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Resolve first, so that the time measured is the dial's.
			if _, err := a.Resolver().LookupNetIP(context.Background(), "ip4", tc.host); err != nil {
				t.Fatalf("resolving %s: %v", tc.host, err)
			}
			start := time.Now()
			ctx, cancel := context.WithDeadline(context.Background(), start.Add(tc.timeout))
			defer cancel()
			c, err := a.DialContext(ctx, "tcp4", net.JoinHostPort(tc.host, "8080"))
			took := time.Since(start)
			if tc.connects {
				if err != nil {
					t.Fatalf("DialContext: %v, want the second address to answer", err)
				}
				defer c.Close()
				if got := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != addrB {
					t.Errorf("connected to %v, want %v", got, addrB)
				}
				if took < tc.atLeast {
					t.Errorf("connected after %v: the first address did not get its %v", took, tc.atLeast)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("DialContext succeeded, want a timeout")
			}
			var oe *net.OpError
			var ne net.Error
			if !errors.As(err, &oe) || oe.Op != "dial" {
				t.Errorf("error %v (%T) is not a dial *net.OpError", err, err)
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v: errors.Is os.ErrDeadlineExceeded %v, context.DeadlineExceeded %v; want both",
					err, errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded))
			}
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("error %v is not a net.Error with Timeout() true", err)
			}
			if took < tc.atLeast {
				t.Errorf("failed after %v, before the deadline (%v)", took, tc.atLeast)
			}
		})
	}
}
