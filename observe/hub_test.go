package observe_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/observe"
)

// endpointID is the netstack ID of the connection c as its own stack sees it.
func endpointID(c net.Conn) stack.TransportEndpointID {
	l := c.LocalAddr().(*net.TCPAddr).AddrPort()
	r := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	return stack.TransportEndpointID{
		LocalPort: l.Port(), LocalAddress: netstack.Address(l.Addr().Unmap()),
		RemotePort: r.Port(), RemoteAddress: netstack.Address(r.Addr().Unmap()),
	}
}

// listeningPair is a pair of stacks, closed when the test ends, and a
// listener on b at addr.
func listeningPair(t *testing.T, addr string) (a, b *ustack.Stack, ln net.Listener) {
	t.Helper()
	a, b, err := ustack.NewPair(ustack.Config{}, ustack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	if ln, err = b.Listen("tcp4", addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return a, b, ln
}

// Both ends of a connection have a state from the moment it is
// established, before either receives a segment after the handshake:
// TCP_INFO under ustack run reads it, and a program that asks right after
// connect(2) must not see an empty control block (it saw "0 unacked" with
// data in flight, where Linux counts the segment).
func TestHubLatestAtEstablishment(t *testing.T) {
	a, b, ln := listeningPair(t, "10.0.9.2:5021")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := a.Dial("tcp4", "10.0.9.2:5021")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, ok := a.TCPProbe().Latest(endpointID(c))
	if !ok {
		t.Fatal("the connecting end has no state once connected")
	}
	if st.Sender.SndUna != st.Sender.SndNxt || st.Sender.MaxPayloadSize == 0 {
		t.Errorf("the connecting end's first state: snd_una %d snd_nxt %d mss %d", st.Sender.SndUna, st.Sender.SndNxt, st.Sender.MaxPayloadSize)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer s.Close()
	if _, ok := b.TCPProbe().Latest(endpointID(s)); !ok {
		t.Error("the accepted end has no state once accepted")
	}
}

// The hub has a connection's state from its first segment on, without
// anyone asking first, and forgets connections the stack closed once
// enough new ones came, and the rest a while later when none come.
func TestHubLatest(t *testing.T) {
	observe.SetSweepIdle(t, 200*time.Millisecond)
	a, _, ln := listeningPair(t, "10.0.9.2:5020")
	// The server says hello and closes first, so the client's end goes
	// through LAST-ACK to closed on a's side at once (no TIME-WAIT there).
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	hub := a.TCPProbe()

	kept, err := a.Dial("tcp4", "10.0.9.2:5020")
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if _, err := io.ReadAll(kept); err != nil {
		t.Fatal(err)
	}
	st, ok := hub.Latest(endpointID(kept))
	if !ok {
		t.Fatal("no state for a connection that received data, though nobody asked before")
	}
	if st.Sender.SndUna != st.Sender.SndNxt || st.Receiver.RcvNxt == 0 {
		t.Errorf("state after the peer's hello and FIN: snd_una %d snd_nxt %d rcv_nxt %d", st.Sender.SndUna, st.Sender.SndNxt, st.Receiver.RcvNxt)
	}
	if got := netip.AddrPortFrom(netip.AddrFrom4(st.ID.RemoteAddress.As4()), st.ID.RemotePort).String(); got != "10.0.9.2:5020" {
		t.Errorf("state's peer %s, want 10.0.9.2:5020", got)
	}

	const conns = 600
	for i := range conns {
		c, err := a.Dial("tcp4", "10.0.9.2:5020")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.ReadAll(c)
		c.Close()
	}
	// Each sweep runs after 256 new connections; what it leaves is the
	// connections opened since plus the one still open.
	testwait.ForNil(t, "the hub's sweeps", func() error {
		if n := hub.Kept(); n > conns/2 {
			return fmt.Errorf("the hub keeps %d connections after %d closed ones, want at most %d", n, conns, conns/2)
		}
		return nil
	})
	if _, ok := hub.Latest(endpointID(kept)); !ok {
		t.Error("a sweep forgot the connection still open")
	}
	// With no new connections, the timed sweep forgets the closed rest.
	testwait.ForNil(t, "the hub's timed sweep", func() error {
		if n := hub.Kept(); n != 1 {
			return fmt.Errorf("the hub keeps %d connections, want 1 (the one open)", n)
		}
		return nil
	})
	if _, ok := hub.Latest(endpointID(kept)); !ok {
		t.Error("the timed sweep forgot the connection still open")
	}
}
