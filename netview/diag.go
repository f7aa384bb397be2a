package netview

import (
	"encoding/binary"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// NETLINK_SOCK_DIAG for TCP and UDP, after net/ipv4/inet_diag.c: what ss
// lists. Other families and protocols get an empty dump: the stack has no
// such sockets (a program's AF_UNIX sockets are the kernel's, in the
// host's namespace).

// Attributes and sizes of include/uapi/linux/inet_diag.h that x/sys/unix
// does not carry.
const (
	inetDiagMeminfo   = 1
	inetDiagInfo      = 2
	inetDiagCong      = 4
	inetDiagTOS       = 5
	inetDiagTClass    = 6
	inetDiagSkmeminfo = 7
	inetDiagShutdown  = 8
	inetDiagSkV6Only  = 11

	sizeofInetDiagReqV2 = 56
	inetDiagNoCookie    = 0xffffffff

	tcpClose = 7 // TCP_CLOSE: an unconnected UDP socket, a TCP one not yet connecting
)

// inetDiagSockID is struct inet_diag_sockid; ports and addresses are in
// network byte order.
type inetDiagSockID struct {
	SPort  [2]byte
	DPort  [2]byte
	Src    [16]byte
	Dst    [16]byte
	If     uint32
	Cookie [2]uint32
}

// inetDiagReqV2 is struct inet_diag_req_v2.
type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	ID       inetDiagSockID
}

// inetDiagMsg is struct inet_diag_msg.
type inetDiagMsg struct {
	Family  uint8
	State   uint8
	Timer   uint8
	Retrans uint8
	ID      inetDiagSockID
	Expires uint32
	RQueue  uint32
	WQueue  uint32
	UID     uint32
	Inode   uint32
}

// diagSock is one socket as sock_diag reports it.
type diagSock struct {
	ep     tcpip.Endpoint
	family uint8
	state  uint8
	id     inetDiagSockID
	rqueue uint32
	wqueue uint32
	uid    uint32
	inode  uint64
	v6only bool
}

// sockDiag answers a NETLINK_SOCK_DIAG request.
func (v *View) sockDiag(h nlHeader, body []byte, isDump bool, d *dump) (bool, error) {
	if h.typ != unix.SOCK_DIAG_BY_FAMILY {
		return false, refuse(unix.EINVAL, "only SOCK_DIAG_BY_FAMILY requests are served")
	}
	if len(body) < 1 {
		return false, refuse(unix.EINVAL, "message too short for its header")
	}
	if body[0] >= unix.AF_MAX {
		return false, refuse(unix.EINVAL, "no such address family")
	}
	if body[0] != unix.AF_INET && body[0] != unix.AF_INET6 {
		if !isDump {
			return false, refuse(unix.ENOENT, "no such socket")
		}
		d.done()
		return true, nil
	}
	if len(body) < sizeofInetDiagReqV2 {
		return false, refuse(unix.EINVAL, "message too short for inet_diag_req_v2")
	}
	var req inetDiagReqV2
	if _, err := decode(body, &req); err != nil {
		return false, err
	}
	var proto tcpip.TransportProtocolNumber
	switch req.Protocol {
	case unix.IPPROTO_TCP:
		proto = header.TCPProtocolNumber
	case unix.IPPROTO_UDP:
		proto = header.UDPProtocolNumber
	default:
		if !isDump {
			return false, refuse(unix.ENOENT, "no such socket")
		}
		d.done()
		return true, nil
	}
	socks := v.diagSockets(req.Family, proto)
	if !isDump {
		for _, s := range socks {
			if sameSocket(s.id, req.ID) {
				d.a.alone(message(unix.SOCK_DIAG_BY_FAMILY, 0, h.seq, d.pid, v.diagMessage(s, req.Ext)...))
				return false, nil
			}
		}
		return false, refuse(unix.ENOENT, "no such socket")
	}
	for _, s := range socks {
		if req.States&(1<<s.state) != 0 {
			d.add(unix.SOCK_DIAG_BY_FAMILY, v.diagMessage(s, req.Ext)...)
		}
	}
	d.done()
	return true, nil
}

// sameSocket is inet_diag_find_one's match: addresses, ports and, unless
// the request says INET_DIAG_NOCOOKIE, the cookie.
func sameSocket(a, req inetDiagSockID) bool {
	if a.SPort != req.SPort || a.DPort != req.DPort || a.Src != req.Src || a.Dst != req.Dst {
		return false
	}
	return req.Cookie == [2]uint32{inetDiagNoCookie, inetDiagNoCookie} || req.Cookie == a.Cookie
}

// diagSockets lists the stack's sockets of the family and protocol.
func (v *View) diagSockets(family uint8, proto tcpip.TransportProtocolNumber) []diagSock {
	var out []diagSock
	seen := map[tcpip.Endpoint]bool{} // a dual-stack endpoint is registered once per network protocol
	for _, tep := range v.ns.RegisteredEndpoints() {
		ep, ok := tep.(tcpip.Endpoint)
		if !ok || seen[ep] {
			continue
		}
		seen[ep] = true
		ei, ok := ep.Info().(*stack.TransportEndpointInfo)
		if !ok || ei.TransProto != proto {
			continue
		}
		s := diagSock{ep: ep, uid: v.uid, family: unix.AF_INET}
		if ei.NetProto == header.IPv6ProtocolNumber {
			s.family = unix.AF_INET6
		}
		if v.progs != nil {
			if hd, ok := v.progs.Holder(ep); ok {
				s.inode, s.uid = hd.Inode, hd.UID
				if hd.Family != 0 {
					s.family = uint8(hd.Family)
				}
			}
		}
		if s.family != family {
			continue
		}
		if s.family == unix.AF_INET6 {
			s.v6only = ep.SocketOptions().GetV6Only()
		}
		s.id = sockID(ei.ID, s.family)
		s.id.Cookie = [2]uint32{uint32(s.inode), uint32(s.inode >> 32)}
		if te, ok := ep.(*tcp.Endpoint); ok {
			v.fillTCP(&s, te, ei)
		} else {
			s.state = tcpClose
			if transport.DatagramEndpointState(ep.State()) == transport.DatagramEndpointStateConnected {
				s.state = uint8(tcp.StateEstablished)
			}
			if n, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
				s.rqueue = uint32(n)
			}
		}
		out = append(out, s)
	}
	return out
}

// fillTCP sets a TCP socket's state and queues: the bytes received and not
// yet read, and the bytes sent and not yet acknowledged, as ss -i shows
// them for the stack (package inspect).
func (v *View) fillTCP(s *diagSock, te *tcp.Endpoint, ei *stack.TransportEndpointInfo) {
	st := tcp.EndpointState(te.State())
	switch st {
	case tcp.StateInitial, tcp.StateBound, tcp.StateError:
		s.state = tcpClose
	case tcp.StateConnecting:
		s.state = uint8(tcp.StateSynSent)
	default:
		s.state = uint8(st) // netstack numbers the TCP states as Linux does
	}
	if st == tcp.StateListen {
		return
	}
	if n, err := te.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
		s.rqueue = uint32(n)
	}
	if v.blocks != nil {
		if cb, ok := v.blocks(ei.ID); ok {
			s.wqueue = uint32(max(cb.SndBufState.SndBufUsed, 0))
		}
	}
}

// sockID is the endpoint's inet_diag_sockid: an AF_INET6 socket's IPv4
// addresses are v4-mapped.
func sockID(id stack.TransportEndpointID, family uint8) inetDiagSockID {
	var out inetDiagSockID
	binary.BigEndian.PutUint16(out.SPort[:], id.LocalPort)
	binary.BigEndian.PutUint16(out.DPort[:], id.RemotePort)
	put := func(dst *[16]byte, a tcpip.Address) {
		switch {
		case a.Len() == 16:
			*dst = a.As16()
		case a.Len() == 4 && family == unix.AF_INET6:
			dst[10], dst[11] = 0xff, 0xff
			copy(dst[12:], a.AsSlice())
		case a.Len() == 4:
			copy(dst[:4], a.AsSlice())
		}
	}
	put(&out.Src, id.LocalAddress)
	put(&out.Dst, id.RemoteAddress)
	return out
}

// diagMessage is inet_diag_msg and the attributes ext asks for.
func (v *View) diagMessage(s diagSock, ext uint8) [][]byte {
	m := inetDiagMsg{Family: s.family, State: s.state, ID: s.id, RQueue: s.rqueue, WQueue: s.wqueue, UID: s.uid, Inode: uint32(s.inode)}
	want := func(attr int) bool { return ext&(1<<(attr-1)) != 0 }
	so := s.ep.SocketOptions()
	return [][]byte{raw(m), attrs(func(ae *netlink.AttributeEncoder) {
		var shut uint8
		if te, ok := s.ep.(*tcp.Endpoint); ok {
			shut = shutdownMask(te)
		}
		ae.Uint8(inetDiagShutdown, shut)
		if want(inetDiagTOS) && s.family == unix.AF_INET {
			tos, _ := s.ep.GetSockOptInt(tcpip.IPv4TOSOption)
			ae.Uint8(inetDiagTOS, uint8(tos))
		}
		if s.family == unix.AF_INET6 {
			if want(inetDiagTClass) {
				tc, _ := s.ep.GetSockOptInt(tcpip.IPv6TrafficClassOption)
				ae.Uint8(inetDiagTClass, uint8(tc))
			}
			ae.Uint8(inetDiagSkV6Only, b2u8(s.v6only))
		}
		if want(inetDiagMeminfo) {
			ae.Bytes(inetDiagMeminfo, raw([4]uint32{s.rqueue, s.wqueue, 0, s.wqueue}))
		}
		if want(inetDiagSkmeminfo) {
			// SK_MEMINFO_*: rmem_alloc, rcvbuf, wmem_alloc, sndbuf,
			// fwd_alloc, wmem_queued, optmem, backlog, drops.
			ae.Bytes(inetDiagSkmeminfo, raw([9]uint32{s.rqueue, uint32(so.GetReceiveBufferSize()), s.wqueue,
				uint32(so.GetSendBufferSize()), 0, s.wqueue}))
		}
		te, isTCP := s.ep.(*tcp.Endpoint)
		if !isTCP {
			return
		}
		if want(inetDiagInfo) && v.progs != nil {
			if info := v.progs.TCPInfo(te); len(info) > 0 {
				ae.Bytes(inetDiagInfo, info)
			}
		}
		if want(inetDiagCong) {
			var cc tcpip.CongestionControlOption
			if te.GetSockOpt(&cc) == nil {
				ae.String(inetDiagCong, string(cc))
			}
		}
	})}
}

// shutdownMask is sk_shutdown: RCV_SHUTDOWN (1) and SEND_SHUTDOWN (2).
func shutdownMask(te *tcp.Endpoint) uint8 {
	var m uint8
	switch tcp.EndpointState(te.State()) {
	case tcp.StateCloseWait, tcp.StateLastAck:
		m = 1 // the peer sent its FIN
	case tcp.StateFinWait1, tcp.StateFinWait2, tcp.StateClosing:
		m = 2
	case tcp.StateTimeWait, tcp.StateClose:
		m = 3
	}
	return m
}
