package lab

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/observe"
)

// udpPacket is an IPv4 UDP packet from 10.1.0.9:5000 to 10.2.0.2:9 as a
// filter hook sees it: network and transport headers set.
func udpPacket() *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: header.IPv4MinimumSize + header.UDPMinimumSize})
	header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize)).Encode(&header.UDPFields{SrcPort: 5000, DstPort: 9, Length: header.UDPMinimumSize})
	header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{
		TotalLength: header.IPv4MinimumSize + header.UDPMinimumSize, TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 1, 0, 9}), DstAddr: tcpip.AddrFrom4([4]byte{10, 2, 0, 2}),
	})
	pkt.NetworkProtocolNumber, pkt.TransportProtocolNumber = header.IPv4ProtocolNumber, header.UDPProtocolNumber
	return pkt
}

// A rule's target counts each packet; with no trace running that is all it
// does (no allocation), and with one it publishes the packet's verdict.
func TestCountingTargetVerdicts(t *testing.T) {
	feed := observe.NewRuleFeed()
	var c counter
	target := &countingTarget{Target: &stack.DropTarget{NetworkProtocol: header.IPv4ProtocolNumber}, verdictTarget: &verdictTarget{
		c: &c, feed: feed, table: "filter", chain: "FORWARD", rule: "-A FORWARD -p udp --dport 9 -j DROP", index: 2, verdict: "DROP"}}
	pkt := udpPacket()
	defer pkt.DecRef()
	if allocs := testing.AllocsPerRun(100, func() { target.Action(pkt, stack.Forward, nil, nil) }); allocs != 0 {
		t.Errorf("a verdict with no trace running allocates %v times, want 0", allocs)
	}
	if c.packets.Load() != 101 { // AllocsPerRun runs it once more to warm up
		t.Errorf("counted %d packets, want 101", c.packets.Load())
	}
	sub := feed.Subscribe(observe.Filter{Port: 9}, 4)
	defer sub.Close()
	other := feed.Subscribe(observe.Filter{Addr: netip.MustParseAddr("10.9.9.9")}, 4)
	defer other.Close()
	if v, _ := target.Action(pkt, stack.Forward, nil, nil); v != stack.RuleDrop {
		t.Errorf("verdict %v, want drop", v)
	}
	if len(other.C()) != 0 {
		t.Error("a subscription for another address got the verdict")
	}
	if len(sub.C()) != 1 {
		t.Fatalf("%d events queued, want 1", len(sub.C()))
	}
	ev := <-sub.C()
	ev.Time = ev.Time.UTC().Truncate(0)
	want := observe.RuleEvent{Table: "filter", Chain: "FORWARD", Rule: "-A FORWARD -p udp --dport 9 -j DROP", Index: 2, Verdict: "DROP",
		Proto: "udp", Src: netip.MustParseAddrPort("10.1.0.9:5000"), Dst: netip.MustParseAddrPort("10.2.0.2:9"), Len: 28}
	if ev.Time.IsZero() {
		t.Error("the event has no time")
	}
	ev.Time = want.Time
	if ev != want {
		t.Errorf("event %+v, want %+v", ev, want)
	}
}
