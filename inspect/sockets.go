package inspect

import (
	"sort"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/tcpinfo"
)

// Socket is one endpoint of the stack, as GET /v1/sockets reports it.
type Socket struct {
	Netid string `json:"netid"` // tcp, udp, icmp or icmp6
	State string `json:"state"` // ss(8)'s names: ESTAB, LISTEN, SYN-SENT, TIME-WAIT, UNCONN ...
	// RecvQ is the bytes received and not yet read (for UDP: the size of
	// the next datagram); SendQ the bytes written and not yet acknowledged,
	// known only from a control block sample. Null when unknown.
	RecvQ   *int     `json:"recv_q"`
	SendQ   *int     `json:"send_q"`
	Local   Addr     `json:"local"`
	Peer    Addr     `json:"peer"`
	Process *Process `json:"process,omitempty"`
	TCP     *TCPInfo `json:"tcp,omitempty"` // with ?info=1, for TCP
}

// Addr is an endpoint address. IP is empty for the unspecified address;
// Any is true for an IPv6 socket that also takes IPv4 (ss shows "*").
type Addr struct {
	IP   string `json:"ip"`
	Port uint16 `json:"port"`
	V6   bool   `json:"v6"`
	Any  bool   `json:"any,omitempty"`
}

// Process is the program that owns a socket.
type Process struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

// TCPInfo is what netstack's TCP_INFO and the endpoint's counters say.
type TCPInfo struct {
	CC          string  `json:"cc"`
	CAState     string  `json:"ca_state"` // Open, Disorder, FastRecovery, SACKRecovery, RTORecovery
	RTOMs       float64 `json:"rto_ms"`
	RTTMs       float64 `json:"rtt_ms"`
	RTTVarMs    float64 `json:"rttvar_ms"`
	Cwnd        uint32  `json:"cwnd"`     // segments
	Ssthresh    uint32  `json:"ssthresh"` // segments; very large until the first loss
	ReorderSeen bool    `json:"reorder_seen"`
	SegsOut     uint64  `json:"segs_out"`
	SegsIn      uint64  `json:"segs_in"`
	Retrans     uint64  `json:"retrans"` // segments retransmitted, all causes
	FastRetrans uint64  `json:"fast_retrans"`
	Timeouts    uint64  `json:"timeouts"` // RTO expirations
	// Lost is Linux's tcpi_lost as ustack estimates it from the probe's
	// SACK scoreboard (see lostSegments); absent without a probe sample.
	Lost uint32 `json:"lost,omitempty"`
	// Byte counts as Linux's TCP_INFO has them, for connections of programs
	// under ustack run (see Programs and tcpinfo.AckedSent).
	BytesSent     uint64 `json:"bytes_sent,omitempty"`
	BytesAcked    uint64 `json:"bytes_acked,omitempty"`
	BytesReceived uint64 `json:"bytes_received,omitempty"`
	// ControlBlock is the latest sample of the TCP probe; absent when the
	// stack has no probe or the connection received no segment yet.
	ControlBlock *ControlBlock `json:"control_block,omitempty"`
}

// ControlBlock is the RFC 793 view of a connection, sampled by netstack's
// TCP probe after the last segment it received. Sequence numbers are raw
// (not relative to the initial ones).
type ControlBlock struct {
	AgeMs         float64 `json:"age_ms"` // since the sample
	SndUna        uint32  `json:"snd_una"`
	SndNxt        uint32  `json:"snd_nxt"`
	RcvNxt        uint32  `json:"rcv_nxt"`
	RcvAcc        uint32  `json:"rcv_acc"` // one past the last byte the peer may send
	MaxSentAck    uint32  `json:"max_sent_ack"`
	SndWnd        uint32  `json:"snd_wnd"` // bytes the peer offered
	RcvWnd        uint32  `json:"rcv_wnd"` // bytes we offered: rcv_acc - rcv_nxt
	SndWscale     uint8   `json:"snd_wscale"`
	RcvWscale     uint8   `json:"rcv_wscale"`
	MSS           int     `json:"mss"`
	Cwnd          int     `json:"cwnd"`
	Ssthresh      int     `json:"ssthresh"`
	Outstanding   int     `json:"unacked"` // segments sent, not acknowledged
	SackedOut     int     `json:"sacked"`
	DupAcks       int     `json:"dup_acks"`
	RTOMs         float64 `json:"rto_ms"`
	SRTTMs        float64 `json:"srtt_ms"`
	RTTVarMs      float64 `json:"rttvar_ms"`
	RACKRTTMs     float64 `json:"rack_rtt_ms"`
	RACKReord     bool    `json:"rack_reord"`
	DSACKSeen     bool    `json:"dsack_seen"`
	InRecovery    bool    `json:"in_recovery"`
	RecoveryFirst uint32  `json:"recovery_first"`
	RecoveryLast  uint32  `json:"recovery_last"`
	SACKPermitted bool    `json:"sack_permitted"`
	Timestamps    bool    `json:"timestamps"`
	SACKBlocks    int     `json:"sack_blocks"` // blocks we advertise (out-of-order data held)
	SndBufUsed    int     `json:"snd_buf_used"`
	SndBufSize    int     `json:"snd_buf_size"`
	RcvBufUsed    int     `json:"rcv_buf_used"`
	RcvBufSize    int     `json:"rcv_buf_size"` // auto-tuned size
}

// Sockets lists the stack's TCP, UDP and ICMP endpoints, with TCP details
// when info is true.
func Sockets(t *Target, info bool) []Socket {
	ns := t.Stack.Netstack()
	var out []Socket
	// A dual-stack endpoint is registered once per network protocol.
	seen := map[tcpip.Endpoint]bool{}
	for _, tep := range ns.RegisteredEndpoints() {
		ep, ok := tep.(tcpip.Endpoint)
		if !ok || seen[ep] {
			continue
		}
		seen[ep] = true
		ei, ok := ep.Info().(*stack.TransportEndpointInfo)
		if !ok {
			continue
		}
		s := Socket{}
		v6 := ei.NetProto == header.IPv6ProtocolNumber
		v6only := v6 && ep.SocketOptions().GetV6Only()
		switch ei.TransProto {
		case header.TCPProtocolNumber:
			s.Netid = "tcp"
		case header.UDPProtocolNumber:
			s.Netid = "udp"
		case header.ICMPv4ProtocolNumber:
			s.Netid = "icmp"
		case header.ICMPv6ProtocolNumber:
			s.Netid = "icmp6"
		default:
			continue
		}
		s.Local = addr(ei.ID.LocalAddress, ei.ID.LocalPort, v6, v6only)
		s.Peer = addr(ei.ID.RemoteAddress, ei.ID.RemotePort, v6, v6only)
		if t.Programs != nil {
			if pid, comm, ok := t.Programs.Owner(ep); ok {
				s.Process = &Process{PID: pid, Comm: comm}
			}
		}
		if te, ok := ep.(*tcp.Endpoint); ok {
			fillTCP(&s, t, ns, te, ei, info)
		} else {
			s.State = datagramState(transport.DatagramEndpointState(ep.State()))
			if n, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
				s.RecvQ = &n
			}
			zero := 0
			s.SendQ = &zero // datagrams leave at once
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool { return less(out[i], out[j]) })
	return out
}

func less(a, b Socket) bool {
	if a.Netid != b.Netid {
		return a.Netid > b.Netid // tcp before udp before icmp, as ss does
	}
	if a.Local.Port != b.Local.Port {
		return a.Local.Port < b.Local.Port
	}
	return a.Peer.Port < b.Peer.Port
}

func addr(a tcpip.Address, port uint16, v6, v6only bool) Addr {
	out := Addr{Port: port, V6: v6}
	if a.Len() == 0 || a.Unspecified() {
		out.Any = v6 && !v6only
		return out
	}
	ip := netstack.NetipAddr(a)
	out.IP = ip.String()
	out.V6 = ip.Is6() // a dual-stack socket's IPv4 connection has IPv4 addresses
	return out
}

func fillTCP(s *Socket, t *Target, ns *stack.Stack, te *tcp.Endpoint, ei *stack.TransportEndpointInfo, info bool) {
	state := tcp.EndpointState(te.State())
	s.State = tcpState(state)
	if state != tcp.StateListen {
		if n, err := te.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
			s.RecvQ = &n
		}
	}
	var cb *tcp.TCPEndpointState
	if t.ControlBlocks != nil {
		if c, ok := t.ControlBlocks.Latest(ei.ID); ok {
			cb = c
			used := c.SndBufState.SndBufUsed
			s.SendQ = &used
		}
	}
	if !info {
		return
	}
	var ti tcpip.TCPInfoOption
	te.GetSockOpt(&ti)
	var cc tcpip.CongestionControlOption
	te.GetSockOpt(&cc)
	st, _ := te.Stats().(*tcp.Stats)
	out := &TCPInfo{
		CC:          string(cc),
		CAState:     caState(ti.CcState),
		RTOMs:       ms(ti.RTO),
		RTTMs:       ms(ti.RTT),
		RTTVarMs:    ms(ti.RTTVar),
		Cwnd:        ti.SndCwnd,
		Ssthresh:    ti.SndSsthresh,
		ReorderSeen: ti.ReorderSeen,
	}
	if st != nil {
		out.SegsOut = st.SegmentsSent.Value()
		out.SegsIn = st.SegmentsReceived.Value()
		out.Retrans = st.SendErrors.Retransmits.Value()
		out.FastRetrans = st.SendErrors.FastRetransmit.Value()
		out.Timeouts = st.SendErrors.Timeouts.Value()
	}
	if cb != nil {
		out.ControlBlock = controlBlock(cb, ns.Clock().NowMonotonic())
		out.Lost = tcpinfo.Lost(cb, ti.CcState == tcpip.RTORecovery)
	}
	if t.Programs != nil {
		fillBytes(out, t.Programs, te, state, cb)
	}
	s.TCP = out
}

// fillBytes adds the byte counts of a program's connection.
func fillBytes(out *TCPInfo, p Programs, te *tcp.Endpoint, state tcp.EndpointState, cb *tcp.TCPEndpointState) {
	written, received, ok := p.ByteCounts(te)
	if !ok {
		return
	}
	out.BytesReceived = received
	if cb != nil {
		out.BytesAcked, out.BytesSent = tcpinfo.AckedSent(written, cb, state, out.Retrans)
	}
}

func controlBlock(c *tcp.TCPEndpointState, now tcpip.MonotonicTime) *ControlBlock {
	snd, rcv := &c.Sender, &c.Receiver
	return &ControlBlock{
		AgeMs:         ms(now.Sub(c.SegTime)),
		SndUna:        uint32(snd.SndUna),
		SndNxt:        uint32(snd.SndNxt),
		RcvNxt:        uint32(rcv.RcvNxt),
		RcvAcc:        uint32(rcv.RcvAcc),
		MaxSentAck:    uint32(snd.MaxSentAck),
		SndWnd:        uint32(snd.SndWnd),
		RcvWnd:        uint32(rcv.RcvNxt.Size(rcv.RcvAcc)),
		SndWscale:     snd.SndWndScale,
		RcvWscale:     rcv.RcvWndScale,
		MSS:           snd.MaxPayloadSize,
		Cwnd:          snd.SndCwnd,
		Ssthresh:      snd.Ssthresh,
		Outstanding:   snd.Outstanding,
		SackedOut:     snd.SackedOut,
		DupAcks:       snd.DupAckCount,
		RTOMs:         ms(snd.RTO),
		SRTTMs:        ms(snd.RTTState.SRTT),
		RTTVarMs:      ms(snd.RTTState.RTTVar),
		RACKRTTMs:     ms(snd.RACKState.RTT),
		RACKReord:     snd.RACKState.Reord,
		DSACKSeen:     snd.RACKState.DSACKSeen,
		InRecovery:    snd.FastRecovery.Active,
		RecoveryFirst: uint32(snd.FastRecovery.First),
		RecoveryLast:  uint32(snd.FastRecovery.Last),
		SACKPermitted: c.SACKPermitted,
		Timestamps:    c.SendTSOk,
		SACKBlocks:    len(c.SACK.Blocks),
		SndBufUsed:    c.SndBufState.SndBufUsed,
		SndBufSize:    c.SndBufState.SndBufSize,
		RcvBufUsed:    c.RcvBufState.RcvBufUsed,
		RcvBufSize:    c.RcvBufState.RcvAutoParams.RcvBufSize,
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// tcpState names a TCP state as ss(8) does.
func tcpState(s tcp.EndpointState) string {
	switch s {
	case tcp.StateEstablished:
		return "ESTAB"
	case tcp.StateSynSent, tcp.StateConnecting:
		return "SYN-SENT"
	case tcp.StateSynRecv:
		return "SYN-RECV"
	case tcp.StateFinWait1:
		return "FIN-WAIT-1"
	case tcp.StateFinWait2:
		return "FIN-WAIT-2"
	case tcp.StateTimeWait:
		return "TIME-WAIT"
	case tcp.StateCloseWait:
		return "CLOSE-WAIT"
	case tcp.StateLastAck:
		return "LAST-ACK"
	case tcp.StateListen:
		return "LISTEN"
	case tcp.StateClosing:
		return "CLOSING"
	}
	return "UNCONN" // initial, bound, closed, error: Linux's TCP_CLOSE
}

func datagramState(s transport.DatagramEndpointState) string {
	if s == transport.DatagramEndpointStateConnected {
		return "ESTAB"
	}
	return "UNCONN"
}

func caState(s tcpip.CongestionControlState) string {
	switch s {
	case tcpip.Open:
		return "Open"
	case tcpip.RTORecovery:
		return "RTORecovery"
	case tcpip.FastRecovery:
		return "FastRecovery"
	case tcpip.SACKRecovery:
		return "SACKRecovery"
	case tcpip.Disorder:
		return "Disorder"
	}
	return "Unknown"
}

// Listening reports whether a socket is one ss -l shows: a TCP listener
// or an unconnected datagram socket.
func (s Socket) Listening() bool {
	return s.State == "LISTEN" || s.State == "UNCONN" && s.Netid != "tcp"
}

// Connected reports whether a socket is one ss shows without -a or -l.
func (s Socket) Connected() bool { return s.State != "LISTEN" && s.State != "UNCONN" }
