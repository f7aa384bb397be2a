package shape

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// BenchmarkBulkTCP measures one TCP stream between two stacks over an
// in-memory pair: without the wrapper, with the wrapper and empty specs
// (pass-through), and with specs that take every packet through the
// shaper without changing anything (loss 0%, and an unreachable rate of
// 100 Gbit/s with its queue). Each op writes 1 MiB; the clock stops when
// the receiver has read everything.
func BenchmarkBulkTCP(b *testing.B) {
	for _, mtu := range []uint32{1500, 65000} {
		for _, c := range []struct {
			name   string
			shaped bool
			spec   string
		}{
			{"none", false, ""},
			{"pass-through", true, ""},
			{"loss 0%", true, "loss 0%"},
			{"rate 100gbit", true, "rate 100gbit"},
		} {
			b.Run(fmt.Sprintf("mtu=%d/%s", mtu, c.name), func(b *testing.B) {
				spec := mustParse(b, c.spec)
				ts := newTwoStacksMTU(b, mtu, c.shaped, spec, spec)
				bulk(b, ts)
			})
		}
	}
}

func bulk(b *testing.B, ts *twoStacks) {
	ln, err := gonet.ListenTCP(ts.b, tcpip.FullAddress{NIC: 1, Addr: addrB, Port: 5001}, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, ts.a, tcpip.FullAddress{NIC: 1, Addr: addrB, Port: 5001}, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	var sent int64
	start := time.Now()
	for b.Loop() {
		n, err := c.Write(buf)
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
	}
	c.CloseWrite()
	if n := <-received; n != sent {
		b.Fatalf("received %d of %d bytes", n, sent)
	}
	b.ReportMetric(float64(sent)*8/time.Since(start).Seconds()/1e9, "Gbit/s")
}

// discard is a lower endpoint that takes packets and does nothing.
type discard struct{ fakeLower }

func (*discard) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) { return pkts.Len(), nil }

// nopDispatcher is a stack that takes packets and does nothing.
type nopDispatcher struct{}

func (nopDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (nopDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)    {}

// BenchmarkPerPacket measures what the wrapper adds to each 1514-byte
// packet written (egress) or delivered (ingress), one packet per call, on
// the real clock, against the lower endpoint alone.
func BenchmarkPerPacket(b *testing.B) {
	for _, c := range []struct {
		name   string
		shaped bool
		spec   string
	}{
		{"none", false, ""},
		{"pass-through", true, ""},
		{"loss 0%", true, "loss 0%"},
		{"rate 100gbit", true, "rate 100gbit"},
	} {
		for _, dir := range []Direction{Egress, Ingress} {
			b.Run(fmt.Sprintf("%s/%s", c.name, dir), func(b *testing.B) {
				lower := &discard{}
				var ep stack.LinkEndpoint = lower
				var shaped *Endpoint
				if c.shaped {
					spec := mustParse(b, c.spec)
					var err error
					if shaped, err = New(lower, nil, spec, spec); err != nil {
						b.Fatal(err)
					}
					defer shaped.Close()
					ep = shaped
				}
				ep.Attach(nopDispatcher{})
				pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, 1514))})
				defer pkt.DecRef()
				var l stack.PacketBufferList
				l.PushBack(pkt)
				b.SetBytes(1514)
				for b.Loop() {
					if dir == Egress {
						ep.WritePackets(l)
					} else if shaped != nil {
						shaped.DeliverNetworkPacket(ipv4.ProtocolNumber, pkt)
					} else {
						lower.dispatcher.DeliverNetworkPacket(ipv4.ProtocolNumber, pkt)
					}
				}
			})
		}
	}
}
