package inspect

import (
	"sort"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/tcpinfo"
)

// Sockets lists the stack's TCP, UDP and ICMP endpoints, with TCP details
// when info is true.
func Sockets(t *Target, info bool) []api.Socket {
	ns := t.Stack.Netstack()
	var out []api.Socket
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
		s := api.Socket{}
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
				s.Process = &api.Process{PID: pid, Comm: comm}
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

func less(a, b api.Socket) bool {
	if a.Netid != b.Netid {
		return a.Netid > b.Netid // tcp before udp before icmp, as ss does
	}
	if a.Local.Port != b.Local.Port {
		return a.Local.Port < b.Local.Port
	}
	return a.Peer.Port < b.Peer.Port
}

func addr(a tcpip.Address, port uint16, v6, v6only bool) api.Addr {
	out := api.Addr{Port: port, V6: v6}
	if a.Len() == 0 || a.Unspecified() {
		out.Any = v6 && !v6only
		return out
	}
	ip := netstack.NetipAddr(a)
	out.IP = ip.String()
	out.V6 = ip.Is6() // a dual-stack socket's IPv4 connection has IPv4 addresses
	return out
}

func fillTCP(s *api.Socket, t *Target, ns *stack.Stack, te *tcp.Endpoint, ei *stack.TransportEndpointInfo, info bool) {
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
	cc, ccInfo := tcp.CongestionControlInfo(te)
	st, _ := te.Stats().(*tcp.Stats)
	out := &api.TCPInfo{
		CC:          cc,
		CCInfo:      ccInfo,
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
func fillBytes(out *api.TCPInfo, p Programs, te *tcp.Endpoint, state tcp.EndpointState, cb *tcp.TCPEndpointState) {
	written, received, ok := p.ByteCounts(te)
	if !ok {
		return
	}
	out.BytesReceived = received
	if cb != nil {
		out.BytesAcked, out.BytesSent = tcpinfo.AckedSent(written, cb, state, out.Retrans)
	}
}

func controlBlock(c *tcp.TCPEndpointState, now tcpip.MonotonicTime) *api.ControlBlock {
	snd, rcv := &c.Sender, &c.Receiver
	return &api.ControlBlock{
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
