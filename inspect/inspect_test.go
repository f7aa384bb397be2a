package inspect

import (
	"context"
	"io"
	"net"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control/api"
)

// pair returns two joined stacks and a connection from a to b that has
// carried n bytes each way.
func pair(t *testing.T, n int) (*ustack.Stack, *ustack.Stack, net.Conn, net.Listener) {
	t.Helper()
	a, b, err := ustack.NewPair(ustack.Config{}, ustack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	ln, err := b.Listen("tcp", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.CopyN(c, c, int64(n)) // echo n bytes, then hold
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", "10.0.9.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go c.Write(make([]byte, n))
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	return a, b, c, ln
}

// fixedBlocks stands in for the probe hub of package observe, which is
// built elsewhere: it returns a given sample for a connection, so the test
// checks what Sockets makes of one.
type fixedBlocks map[stack.TransportEndpointID]*tcp.TCPEndpointState

func (f fixedBlocks) Latest(id stack.TransportEndpointID) (*tcp.TCPEndpointState, bool) {
	s, ok := f[id]
	return s, ok
}

func TestSocketsOfAPair(t *testing.T) {
	const n = 256 << 10
	a, b, c, _ := pair(t, n)
	local := c.LocalAddr().(*net.TCPAddr)

	got := Sockets(&Target{Name: "a", Stack: a}, true)
	if len(got) != 1 {
		t.Fatalf("stack a: %+v, want one connection", got)
	}
	s := got[0]
	if s.Netid != "tcp" || s.State != "ESTAB" || s.Local.IP != "10.0.9.1" || int(s.Local.Port) != local.Port ||
		s.Peer.IP != "10.0.9.2" || s.Peer.Port != 7000 || s.Local.V6 || !s.Connected() || s.Listening() {
		t.Errorf("socket %+v", s)
	}
	if s.RecvQ == nil || *s.RecvQ != 0 || s.SendQ != nil {
		t.Errorf("queues %v %v: want 0 received-unread and unknown unacked (no probe)", s.RecvQ, s.SendQ)
	}
	ti := s.TCP
	// What the endpoint's TCP_INFO says right now must match.
	var ep *tcp.Endpoint
	for _, e := range a.Netstack().RegisteredEndpoints() {
		ep = e.(*tcp.Endpoint)
	}
	var want tcpip.TCPInfoOption
	ep.GetSockOpt(&want)
	if ti == nil || ti.CC != "reno" || ti.Cwnd != want.SndCwnd || ti.RTOMs != ms(want.RTO) || ti.RTTMs != ms(want.RTT) || ti.CAState != "Open" {
		t.Errorf("tcp info %+v, TCP_INFO %+v", ti, want)
	}
	st := ep.Stats().(*tcp.Stats)
	// 256 KiB each way is many segments each way at the pair's 1500-byte
	// MTU (fewer with GSO); the counts are the endpoint's own.
	// Retransmissions are rare on the pair but happen on a loaded machine
	// (a tail-loss probe): the count must be the endpoint's, not zero.
	if ti.SegsOut != st.SegmentsSent.Value() || ti.SegsIn != st.SegmentsReceived.Value() || ti.SegsOut < 4 || ti.SegsIn < 4 ||
		ti.Retrans != st.SendErrors.Retransmits.Value() {
		t.Errorf("segments %d out %d in (endpoint: %d, %d), retrans %d", ti.SegsOut, ti.SegsIn, st.SegmentsSent.Value(), st.SegmentsReceived.Value(), ti.Retrans)
	}
	if ti.ControlBlock != nil {
		t.Errorf("a control block without ControlBlocks: %+v", ti.ControlBlock)
	}

	// Stack b has the listener (shown by ss -l) and the accepted end.
	var listen, estab int
	for _, s := range Sockets(&Target{Name: "b", Stack: b}, false) {
		switch {
		case s.State == "LISTEN" && s.Local.Port == 7000 && s.Peer.Port == 0 && s.Listening():
			listen++
		case s.State == "ESTAB" && s.Local.Port == 7000 && int(s.Peer.Port) == local.Port && s.TCP == nil:
			estab++
		default:
			t.Errorf("stack b: unexpected %+v", s)
		}
	}
	if listen != 1 || estab != 1 {
		t.Errorf("stack b: %d listeners, %d connections; want 1 and 1", listen, estab)
	}
	if n := CountConnections(b.Netstack()); n != 1 {
		t.Errorf("CountConnections(b) = %d, want 1", n)
	}

	// A control block sample is passed through by the connection's ID.
	id := ep.Info().(*stack.TransportEndpointInfo).ID
	sample := &tcp.TCPEndpointState{}
	sample.Sender.SndUna, sample.Sender.SndNxt, sample.Receiver.RcvNxt = 1000, 1500, 7000
	sample.Receiver.RcvAcc = 7000 + 65535
	sample.Sender.SndWndScale, sample.Receiver.RcvWndScale = 7, 9
	sample.SndBufState.SndBufUsed = 500
	sample.SegTime = a.Netstack().Clock().NowMonotonic()
	s = Sockets(&Target{Name: "a", Stack: a, ControlBlocks: fixedBlocks{id: sample}}, true)[0]
	cb := s.TCP.ControlBlock
	if cb == nil || cb.SndUna != 1000 || cb.SndNxt != 1500 || cb.RcvNxt != 7000 || cb.RcvWnd != 65535 ||
		cb.SndWscale != 7 || cb.RcvWscale != 9 || s.SendQ == nil || *s.SendQ != 500 || cb.AgeMs < 0 || cb.AgeMs > 5000 {
		t.Errorf("control block %+v, send_q %v", cb, s.SendQ)
	}
}

func TestCounters(t *testing.T) {
	a, _, _, _ := pair(t, 64<<10)
	list := Counters(&Target{Name: "a", Stack: a})
	byKey := map[string]api.Counter{}
	metricName := regexp.MustCompile(`^ustack_[a-z0-9_]+$`)
	for _, c := range list {
		if _, dup := byKey[c.Key()]; dup {
			t.Errorf("counter %s twice", c.Key())
		}
		byKey[c.Key()] = c
		if !metricName.MatchString(c.Metric) {
			t.Errorf("%s: bad metric name %q", c.Key(), c.Metric)
		}
	}
	for _, name := range []string{
		"DroppedPackets", "TcpActiveConnectionOpenings", "TcpRetransmits", "TcpCurrentEstablished",
		"IpMalformedPacketsReceived", "UdpPacketsReceived", "ArpPacketsReceived", "IcmpV4PacketsSentEchoRequest",
		"IcmpV6PacketsReceivedNeighborSolicit", "NicsRxPackets", "NicTxPacketsDroppedNoBufferSpace{nic=eth0}",
		"NicIpv4IpPacketsReceived{nic=eth0}", "NicRxPackets{nic=lo}", "UstackLinkDropped",
	} {
		if _, ok := byKey[name]; !ok {
			t.Errorf("no counter %s", name)
		}
	}
	if c := byKey["TcpActiveConnectionOpenings"]; c.Value != 1 || c.Metric != "ustack_tcp_active_connection_openings_total" || c.Gauge {
		t.Errorf("%+v", c)
	}
	if c := byKey["TcpCurrentEstablished"]; c.Value != 1 || c.Metric != "ustack_tcp_current_established" || !c.Gauge {
		t.Errorf("%+v", c)
	}
	if c := byKey["NicTxBytes{nic=eth0}"]; c.Value < 64<<10 {
		t.Errorf("%+v: want at least the 64 KiB sent", c)
	}
	if len(list) < 150 {
		t.Errorf("only %d counters", len(list))
	}
}

func TestSplitCamel(t *testing.T) {
	for in, want := range map[string]string{
		"PacketsReceived":                   "Packets Received",
		"ICMP":                              "ICMP",
		"ICMPv4":                            "ICMPv4",
		"NICs":                              "NICs",
		"V4":                                "V4",
		"UnknownL3ProtocolRcvdPacketCounts": "Unknown L3 Protocol Rcvd Packet Counts",
		"TxPacketsDroppedNoBufferSpace":     "Tx Packets Dropped No Buffer Space",
		"ListenOverflowSynDrop":             "Listen Overflow Syn Drop",
	} {
		got := ""
		for i, w := range splitCamel(in) {
			if i > 0 {
				got += " "
			}
			got += w
		}
		if got != want {
			t.Errorf("splitCamel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAddr(t *testing.T) {
	v4 := tcpip.AddrFrom4([4]byte{10, 0, 2, 15})
	v6 := tcpip.AddrFrom16Slice(netip.MustParseAddr("fd00::15").AsSlice())
	tests := []struct {
		a            tcpip.Address
		v6, v6only   bool
		ip           string
		wantV6, wany bool
	}{
		{v4, false, false, "10.0.2.15", false, false},
		{v4, true, false, "10.0.2.15", false, false}, // dual-stack socket, IPv4 peer
		{v6, true, true, "fd00::15", true, false},
		{tcpip.Address{}, true, false, "", true, true},
		{tcpip.Address{}, true, true, "", true, false},
		{tcpip.Address{}, false, false, "", false, false},
	}
	for i, tc := range tests {
		got := addr(tc.a, 80, tc.v6, tc.v6only)
		if got.IP != tc.ip || got.V6 != tc.wantV6 || got.Any != tc.wany || got.Port != 80 {
			t.Errorf("%d: %+v", i, got)
		}
	}
}
