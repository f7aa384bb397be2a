package mutate

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// BenchmarkWrite is the cost per 1500-byte frame the stack sends: with no
// rules, with a rule that matches nothing, and with a rewrite (a copy and
// two checksums).
func BenchmarkWrite(b *testing.B) {
	frame := tcpFrame(segment{src: addrLocal, dst: addrRemote, sport: 40000, dport: 80, seq: 1, ack: 1, flags: header.TCPFlagAck, payload: make([]byte, 1446)})
	for _, bc := range []struct{ name, rule string }{
		{"none", ""},
		{"no-match", "drop udp dport 53"},
		{"rewrite", "tcp rewrite ttl=9"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var rules []Rule
			if bc.rule != "" {
				r, err := Parse(bc.rule)
				if err != nil {
					b.Fatal(err)
				}
				rules = append(rules, r)
			}
			wire := channel.New(1, 1500, "")
			ep, err := New(wire, nil, header.EthernetMinimumSize, rules)
			if err != nil {
				b.Fatal(err)
			}
			defer ep.Close()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				var l stack.PacketBufferList
				l.PushBack(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)}))
				ep.WritePackets(l)
				l.Reset()
				if p := wire.Read(); p != nil {
					p.DecRef()
				}
			}
		})
	}
}
