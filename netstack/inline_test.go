package netstack

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/internal/inline"
	"github.com/ustack/ustack/internal/testwait"
)

// With tcp.inline_processing (the default, patch 0023) a segment for an
// established connection is processed on the goroutine that delivers it
// while a relay runs a write to completion (package inline): over a link
// that delivers on the sender's goroutine, what one side writes is
// readable at the other once Write has returned, with the receiving
// stack's processor goroutines paused. Without the option, or outside a
// run to completion (a bulk write), the segment waits for them and arrives
// when they resume.
func TestInlineProcessing(t *testing.T) {
	for _, tc := range []struct {
		name          string
		queued, scope bool
	}{
		{"inline", false, true},
		{"option off", true, true},
		{"outside a run to completion", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv, err := New(TCPOptions{QueuedProcessing: tc.queued})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(rcv.Destroy)
			snd, err := New(TCPOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(snd.Destroy)
			rcvAddr, _ := linkStacks(t, rcv, snd)
			var lwq waiter.Queue
			lep, terr := rcv.NewEndpoint(tcp.ProtocolNumber, header.IPv4ProtocolNumber, &lwq)
			if terr != nil {
				t.Fatalf("NewEndpoint: %s", terr)
			}
			t.Cleanup(lep.Close)
			if terr := lep.Bind(tcpip.FullAddress{NIC: 1, Addr: rcvAddr, Port: 80}); terr != nil {
				t.Fatalf("Bind: %s", terr)
			}
			if terr := lep.Listen(1); terr != nil {
				t.Fatalf("Listen: %s", terr)
			}
			client, err := gonet.DialTCP(snd, tcpip.FullAddress{NIC: 1, Addr: rcvAddr, Port: 80}, header.IPv4ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			var server tcpip.Endpoint
			testwait.For(t, "the connection in the accept queue", func() bool {
				ep, _, terr := lep.Accept(nil)
				server = ep
				return terr == nil
			})
			t.Cleanup(server.Close)
			// Read does not wait: what is there, or ErrWouldBlock.
			read := func() (string, tcpip.Error) {
				var b bytes.Buffer
				_, terr := server.Read(&b, tcpip.ReadOptions{})
				return b.String(), terr
			}

			rcv.Pause()
			paused := true
			defer func() {
				if paused {
					rcv.Resume()
				}
			}()
			// As a relay writes: inside a run to completion.
			if tc.scope {
				inline.Begin()
			}
			_, err = client.Write([]byte("ping"))
			if tc.scope {
				inline.End()
			}
			if err != nil {
				t.Fatal(err)
			}
			got, terr := read()
			if !tc.queued && tc.scope {
				if terr != nil || got != "ping" {
					t.Fatalf("read at once with the processors paused: %q, %v; want \"ping\"", got, terr)
				}
				return
			}
			if _, wouldBlock := terr.(*tcpip.ErrWouldBlock); !wouldBlock {
				t.Fatalf("read at once with the processors paused: %q, %v; want ErrWouldBlock (the segment waits for them)", got, terr)
			}
			rcv.Resume()
			paused = false
			testwait.For(t, "the segment processed once the processors resumed", func() bool {
				got, terr = read()
				return terr == nil
			})
			if got != "ping" {
				t.Fatalf("read once the processors resumed: %q; want \"ping\"", got)
			}
		})
	}
}
