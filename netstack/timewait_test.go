package netstack

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/internal/testwait"
)

// linkStacks joins a and b with an in-memory link that delivers on the
// sender's goroutine, as 10.0.0.1 and 10.0.0.2 on NIC 1 with a default
// route each, and returns their addresses.
func linkStacks(t *testing.T, a, b *stack.Stack) (addrA, addrB tcpip.Address) {
	t.Helper()
	addrA = tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	addrB = tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	la, lb := pipe.New("\x02\x00\x00\x00\x00\x01", "\x02\x00\x00\x00\x00\x02", 1500)
	for _, n := range []struct {
		s    *stack.Stack
		ep   stack.LinkEndpoint
		addr tcpip.Address
	}{{a, la, addrA}, {b, lb, addrB}} {
		if err := n.s.CreateNIC(1, n.ep); err != nil {
			t.Fatalf("CreateNIC: %s", err)
		}
		pa := tcpip.ProtocolAddress{Protocol: header.IPv4ProtocolNumber, AddressWithPrefix: n.addr.WithPrefix()}
		if err := n.s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			t.Fatalf("AddProtocolAddress: %s", err)
		}
		n.s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	}
	return addrA, addrB
}

// A stack whose new connections come through a tcp.Forwarder (the nat
// gateway) closes first and holds the connection in TIME-WAIT; the peer then
// opens a new connection from the same port. The SYN must reach the
// forwarder whether TIME-WAIT is still running when it is processed (netstack
// dropped it: the peer waited for its SYN retransmits) or ends while the SYN
// is queued (netstack answered with a reset: the peer's connect was refused).
// The forwarding stack runs on a manual clock, so TIME-WAIT ends only when
// the test says.
func TestTimeWaitSYNReachesForwarder(t *testing.T) {
	for _, tc := range []struct {
		name string
		// endTimeWait runs with the new SYN queued at the TIME-WAIT
		// endpoint and its stack's TCP processors paused.
		endTimeWait bool
	}{
		{"SYN processed in TIME-WAIT", false},
		{"TIME-WAIT ends with the SYN queued", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := faketime.NewManualClock()
			fwd, err := NewClocked(TCPOptions{}, nil, clock, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(fwd.Destroy)
			peer, err := New(TCPOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(peer.Destroy)
			fwdAddr, peerAddr := linkStacks(t, fwd, peer)
			// TIME-WAIT lasts until the manual clock is moved.
			tw := tcpip.TCPTimeWaitTimeoutOption(time.Minute)
			if err := fwd.SetTransportProtocolOption(tcp.ProtocolNumber, &tw); err != nil {
				t.Fatalf("TIME-WAIT option: %s", err)
			}
			type accepted struct {
				ep tcpip.Endpoint
				wq *waiter.Queue
			}
			accepts := make(chan accepted, 2)
			f := tcp.NewForwarder(fwd, 0, 10, func(r *tcp.ForwarderRequest) {
				var wq waiter.Queue
				ep, err := r.CreateEndpoint(&wq)
				if err != nil {
					r.Complete(true)
					t.Errorf("forwarder: CreateEndpoint: %s", err)
					return
				}
				r.Complete(false)
				accepts <- accepted{ep, &wq}
			})
			fwd.SetTransportProtocolHandler(tcp.ProtocolNumber, f.HandlePacket)

			local := tcpip.FullAddress{NIC: 1, Addr: peerAddr, Port: 40123}
			remote := tcpip.FullAddress{NIC: 1, Addr: fwdAddr, Port: 80}
			first, err := gonet.DialTCPWithBind(context.Background(), peer, local, remote, header.IPv4ProtocolNumber)
			if err != nil {
				t.Fatalf("first connection: %v", err)
			}
			old := <-accepts
			// The forwarding side closes first, then the peer: the
			// forwarding side's endpoint goes to TIME-WAIT.
			old.ep.Close()
			if _, err := io.ReadAll(first); err != nil {
				t.Fatalf("first connection: reading to EOF: %v", err)
			}
			first.Close()
			testwait.For(t, "the first connection in TIME-WAIT", func() bool {
				return tcp.EndpointState(old.ep.State()) == tcp.StateTimeWait
			})

			var wq waiter.Queue
			ep, terr := peer.NewEndpoint(tcp.ProtocolNumber, header.IPv4ProtocolNumber, &wq)
			if terr != nil {
				t.Fatalf("NewEndpoint: %s", terr)
			}
			t.Cleanup(ep.Close)
			// The peer's port is free once its LAST-ACK is answered.
			testwait.ForNil(t, "binding the peer's port again", func() error {
				if err := ep.Bind(local); err != nil {
					if _, inUse := err.(*tcpip.ErrPortInUse); !inUse {
						t.Fatalf("Bind: %s", err)
					}
					return fmt.Errorf("%s", err)
				}
				return nil
			})
			if tc.endTimeWait {
				fwd.Pause()
			}
			// The link delivers in the sender's goroutine: when Connect
			// returns, the SYN waits in the TIME-WAIT endpoint's queue.
			if err := ep.Connect(remote); err != nil {
				if _, started := err.(*tcpip.ErrConnectStarted); !started {
					t.Fatalf("Connect: %s", err)
				}
			}
			if tc.endTimeWait {
				clock.Advance(time.Minute)
				fwd.Resume()
			}
			var st tcp.EndpointState
			testwait.For(t, "the second connection's handshake to end", func() bool {
				st = tcp.EndpointState(ep.State())
				return st != tcp.StateSynSent
			})
			if st != tcp.StateEstablished {
				t.Fatalf("second connection from port %d: %s (error %v), want established", local.Port, st, ep.LastError())
			}
			n := <-accepts
			n.ep.Close()
			if got := tcp.EndpointState(old.ep.State()); got == tcp.StateTimeWait {
				t.Errorf("the first connection is still in TIME-WAIT after the new one was accepted")
			}
		})
	}
}
