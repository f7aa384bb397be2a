package sockets

import (
	"bytes"
	"encoding/binary"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/tcpinfo"
)

// Options that shape the program's end rather than the TCP connection
// (timeouts and watermarks of its reads and writes, its buffer sizes) are
// left to the kernel, which applies them to the AF_UNIX socket the program
// really reads and writes.
func kernelOption(level, name int) bool {
	if level != unix.SOL_SOCKET {
		return false
	}
	switch name {
	case unix.SO_RCVTIMEO_OLD, unix.SO_SNDTIMEO_OLD, unix.SO_RCVTIMEO_NEW, unix.SO_SNDTIMEO_NEW,
		unix.SO_RCVLOWAT, unix.SO_SNDLOWAT, unix.SO_SNDBUF, unix.SO_RCVBUF,
		unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE:
		return true
	}
	return false
}

// setsockopt answers setsockopt(fd, level, name, val, len).
func (s *socket) setsockopt(c *intercept.Call) {
	level, name := int(int32(c.Arg(1))), int(int32(c.Arg(2)))
	ptr, length := c.Arg(3), int(int32(c.Arg(4)))
	if level == unix.SOL_SOCKET && (name == unix.SO_SNDBUF || name == unix.SO_RCVBUF) {
		// Also size netstack's buffers, then let the kernel size the
		// program's end.
		if v, err := readInt(c, ptr, length); err == nil {
			s.mu.Lock()
			if name == unix.SO_SNDBUF {
				s.ep.SocketOptions().SetSendBufferSize(int64(v)*2, true)
			} else {
				s.ep.SocketOptions().SetReceiveBufferSize(int64(v)*2, true)
			}
			s.mu.Unlock()
		}
	}
	if kernelOption(level, name) {
		c.Continue()
		return
	}
	if level == unix.IPPROTO_TCP && name == unix.TCP_CONGESTION && s.dg == nil {
		s.setCongestion(c, ptr, length)
		return
	}
	if level == unix.SOL_SOCKET && name == unix.SO_LINGER {
		if length < 8 {
			c.Fail(unix.EINVAL)
			return
		}
		var b [8]byte
		if err := c.ReadMem(ptr, b[:]); err != nil {
			answerErr(c, err)
			return
		}
		s.mu.Lock()
		s.ep.SocketOptions().SetLinger(decodeLinger(b))
		s.mu.Unlock()
		c.Return(0)
		return
	}
	v, err := readInt(c, ptr, length)
	if err != nil {
		answerErr(c, err)
		return
	}
	s.mu.Lock()
	en := s.setIntOption(level, name, v)
	s.mu.Unlock()
	if en != 0 {
		c.Fail(en)
		return
	}
	c.Return(0)
}

// decodeLinger decodes struct linger: l_onoff, l_linger in seconds.
func decodeLinger(b [8]byte) tcpip.LingerOption {
	return tcpip.LingerOption{
		Enabled: nativeUint32(b[:4]) != 0,
		Timeout: time.Duration(int32(nativeUint32(b[4:]))) * time.Second,
	}
}

func readInt(c *intercept.Call, ptr uint64, length int) (int, error) {
	if length < 4 {
		return 0, unix.EINVAL
	}
	var b [4]byte
	if err := c.ReadMem(ptr, b[:]); err != nil {
		return 0, err
	}
	return decodeInt(b), nil
}

// decodeInt decodes an int option value.
func decodeInt(b [4]byte) int { return int(int32(nativeUint32(b[:]))) }

// inertOptions are accepted and remembered (getsockopt reads them back).
// On datagram sockets, those asking for the packet info, TTL or hop limit
// and TOS or traffic class deliver their control messages
// (controlMessages); the others change nothing: IP_RECVERR's queue and
// timestamps are not delivered, IP_RECVOPTS's and IP_RETOPTS's IP options
// neither (netstack does not hand a packet's options to its endpoint, and
// Linux sends the message only for a packet that has some), and path MTU
// discovery is netstack's own. Programs set them routinely (ping sets
// IP_RETOPTS on every start) and would fail or warn on an error.
var inertOptions = map[[2]int]bool{
	{unix.IPPROTO_IP, unix.IP_RECVERR}:              true,
	{unix.IPPROTO_IP, unix.IP_PKTINFO}:              true,
	{unix.IPPROTO_IP, unix.IP_RECVTTL}:              true,
	{unix.IPPROTO_IP, unix.IP_RECVTOS}:              true,
	{unix.IPPROTO_IP, unix.IP_RECVOPTS}:             true,
	{unix.IPPROTO_IP, unix.IP_RETOPTS}:              true,
	{unix.IPPROTO_IP, unix.IP_MTU_DISCOVER}:         true,
	{unix.IPPROTO_IP, unix.IP_FREEBIND}:             true,
	{unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT}: true,
	{unix.IPPROTO_IPV6, unix.IPV6_RECVERR}:          true,
	{unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO}:      true,
	{unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT}:     true,
	{unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS}:       true,
	{unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER}:     true,
	{unix.SOL_SOCKET, unix.SO_TIMESTAMP_OLD}:        true,
	{unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_OLD}:      true,
	{unix.SOL_SOCKET, unix.SO_TIMESTAMP_NEW}:        true,
	{unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_NEW}:      true,
}

// setIntOption maps an integer option onto the endpoint; s.mu is held.
func (s *socket) setIntOption(level, name, v int) unix.Errno {
	if level == unix.IPPROTO_IPV6 && s.domain != unix.AF_INET6 {
		return unix.ENOPROTOOPT
	}
	if inertOptions[[2]int{level, name}] {
		if s.inert == nil {
			s.inert = map[[2]int]int{}
		}
		s.inert[[2]int{level, name}] = v
		return 0
	}
	switch level {
	case unix.SOL_SOCKET:
		return s.setSocketOption(name, v)
	case unix.IPPROTO_TCP:
		if s.dg != nil {
			return unix.ENOPROTOOPT // as Linux says for TCP options on UDP
		}
		return s.setTCPOption(name, v)
	case unix.SOL_UDP:
		// UDP_CORK off is what every socket has; corking (joining sends
		// into one datagram) is not served, and is refused rather than
		// ignored.
		if s.proto == udp.ProtocolNumber && name == unix.UDP_CORK && v == 0 {
			return 0
		}
		return unix.ENOPROTOOPT
	case unix.IPPROTO_IP:
		return s.setIPOption(name, v)
	case unix.IPPROTO_IPV6:
		return s.setIPv6Option(name, v)
	}
	return unix.ENOPROTOOPT
}

// setSocketOption sets a SOL_SOCKET option; s.mu is held.
func (s *socket) setSocketOption(name, v int) unix.Errno {
	so := s.ep.SocketOptions()
	switch name {
	case unix.SO_REUSEADDR:
		so.SetReuseAddress(v != 0)
	case unix.SO_REUSEPORT:
		so.SetReusePort(v != 0)
	case unix.SO_KEEPALIVE:
		so.SetKeepAlive(v != 0)
	case unix.SO_BROADCAST:
		so.SetBroadcast(v != 0)
	case unix.SO_OOBINLINE, unix.SO_DONTROUTE, unix.SO_PRIORITY:
		// Accepted and without effect on this stack, as on many.
	default:
		return unix.ENOPROTOOPT
	}
	return 0
}

// setTCPOption sets an IPPROTO_TCP option of a TCP socket; s.mu is held.
func (s *socket) setTCPOption(name, v int) unix.Errno {
	so := s.ep.SocketOptions()
	switch name {
	case unix.TCP_NODELAY:
		so.SetDelayOption(v == 0)
	case unix.TCP_CORK:
		so.SetCorkOption(v != 0)
	case unix.TCP_QUICKACK:
		so.SetQuickAck(v != 0)
	case unix.TCP_KEEPIDLE:
		if v < 1 {
			return unix.EINVAL
		}
		opt := tcpip.KeepaliveIdleOption(time.Duration(v) * time.Second)
		return sockoptErrno(s.ep.SetSockOpt(&opt))
	case unix.TCP_KEEPINTVL:
		if v < 1 {
			return unix.EINVAL
		}
		opt := tcpip.KeepaliveIntervalOption(time.Duration(v) * time.Second)
		return sockoptErrno(s.ep.SetSockOpt(&opt))
	case unix.TCP_KEEPCNT:
		return sockoptErrno(s.ep.SetSockOptInt(tcpip.KeepaliveCountOption, v))
	case unix.TCP_SYNCNT:
		if v < 1 || v > 255 { // Linux's MAX_TCP_SYNCNT
			return unix.EINVAL
		}
		return sockoptErrno(s.ep.SetSockOptInt(tcpip.TCPSynCountOption, v))
	case unix.TCP_USER_TIMEOUT:
		if v < 0 {
			return unix.EINVAL
		}
		opt := tcpip.TCPUserTimeoutOption(time.Duration(v) * time.Millisecond)
		return sockoptErrno(s.ep.SetSockOpt(&opt))
	case unix.TCP_MAXSEG:
		return sockoptErrno(s.ep.SetSockOptInt(tcpip.MaxSegOption, v))
	default:
		return unix.ENOPROTOOPT
	}
	return 0
}

// setIPOption sets an IPPROTO_IP option; s.mu is held.
func (s *socket) setIPOption(name, v int) unix.Errno {
	switch name {
	case unix.IP_TOS:
		return sockoptErrno(s.ep.SetSockOptInt(tcpip.IPv4TOSOption, v))
	case unix.IP_TTL:
		return sockoptErrno(s.ep.SetSockOptInt(tcpip.IPv4TTLOption, v))
	case unix.IP_MULTICAST_TTL:
		return sockoptErrno(s.ep.SetSockOptInt(tcpip.MulticastTTLOption, v))
	case unix.IP_MULTICAST_LOOP:
		s.ep.SocketOptions().SetMulticastLoop(v != 0)
		return 0
	}
	return unix.ENOPROTOOPT
}

// setIPv6Option sets an IPPROTO_IPV6 option of an AF_INET6 socket; s.mu
// is held.
func (s *socket) setIPv6Option(name, v int) unix.Errno {
	switch name {
	case unix.IPV6_V6ONLY:
		if s.state != stateNew {
			return unix.EINVAL // Linux: only before bind/connect
		}
		s.ep.SocketOptions().SetV6Only(v != 0)
		return 0
	case unix.IPV6_TCLASS:
		return sockoptErrno(s.ep.SetSockOptInt(tcpip.IPv6TrafficClassOption, v))
	case unix.IPV6_UNICAST_HOPS:
		return sockoptErrno(s.ep.SetSockOptInt(tcpip.IPv6HopLimitOption, v))
	}
	return unix.ENOPROTOOPT
}

// sockoptErrno is the errno of a netstack option call, 0 for success.
func sockoptErrno(terr tcpip.Error) unix.Errno {
	if terr != nil {
		return errnoOf(terr)
	}
	return 0
}

// getsockopt answers getsockopt(fd, level, name, val, lenp).
func (s *socket) getsockopt(c *intercept.Call) {
	level, name := int(int32(c.Arg(1))), int(int32(c.Arg(2)))
	if kernelOption(level, name) {
		c.Continue()
		return
	}
	var out []byte
	tcpLevel := level == unix.IPPROTO_TCP && s.dg == nil
	if tcpLevel && name == unix.TCP_INFO {
		s.mu.Lock()
		out = s.tcpInfo()
		s.mu.Unlock()
	} else if tcpLevel && name == unix.TCP_CONGESTION {
		var cc tcpip.CongestionControlOption
		s.mu.Lock()
		terr := s.ep.GetSockOpt(&cc)
		s.mu.Unlock()
		if terr != nil {
			c.Fail(errnoOf(terr))
			return
		}
		out = make([]byte, tcpCANameMax)
		copy(out, cc)
	} else if level == unix.SOL_SOCKET && name == unix.SO_LINGER {
		s.mu.Lock()
		l := s.ep.SocketOptions().GetLinger()
		s.mu.Unlock()
		out = make([]byte, 8)
		if l.Enabled {
			putNativeUint32(out[:4], 1)
		}
		putNativeUint32(out[4:], uint32(l.Timeout/time.Second))
	} else {
		s.mu.Lock()
		v, en := s.intOption(level, name)
		s.mu.Unlock()
		if en != 0 {
			c.Fail(en)
			return
		}
		out = make([]byte, 4)
		putNativeUint32(out, uint32(int32(v)))
	}
	// Like the kernel: at most *lenp bytes, and *lenp set to what was
	// written.
	lenPtr := c.Arg(4)
	var lb [4]byte
	if err := c.ReadMem(lenPtr, lb[:]); err != nil {
		answerErr(c, err)
		return
	}
	n := int(int32(nativeUint32(lb[:])))
	if n < 0 {
		c.Fail(unix.EINVAL)
		return
	}
	if n < len(out) {
		out = out[:n]
	}
	putNativeUint32(lb[:], uint32(len(out)))
	if err := c.WriteMems(intercept.MemWrite{Addr: c.Arg(3), Buf: out}, intercept.MemWrite{Addr: lenPtr, Buf: lb[:]}); err != nil {
		answerErr(c, err)
		return
	}
	c.Return(0)
}

// foreignLevel is getsockopt's error for a level the socket does not
// have (another protocol's, IPv6's on an IPv4 socket, an unknown one):
// Linux's IPv4 getsockopt says EOPNOTSUPP, IPv6's ENOPROTOOPT. Every
// setsockopt says ENOPROTOOPT.
func (s *socket) foreignLevel() unix.Errno {
	if s.domain == unix.AF_INET {
		return unix.EOPNOTSUPP
	}
	return unix.ENOPROTOOPT
}

// intOption reads an integer option; s.mu is held.
func (s *socket) intOption(level, name int) (int, unix.Errno) {
	if level == unix.IPPROTO_IPV6 && s.domain != unix.AF_INET6 {
		return 0, s.foreignLevel()
	}
	if inertOptions[[2]int{level, name}] {
		return s.inert[[2]int{level, name}], 0
	}
	switch level {
	case unix.SOL_SOCKET:
		return s.socketOption(name)
	case unix.IPPROTO_TCP:
		if s.dg != nil {
			return 0, s.foreignLevel()
		}
		return s.tcpOption(name)
	case unix.SOL_UDP:
		if s.proto != udp.ProtocolNumber {
			return 0, s.foreignLevel()
		}
		if name == unix.UDP_CORK {
			return 0, 0 // never corked: see setIntOption
		}
		return 0, unix.ENOPROTOOPT
	case unix.IPPROTO_IP:
		return s.ipOption(name)
	case unix.IPPROTO_IPV6:
		return s.ipv6Option(name)
	}
	return 0, s.foreignLevel()
}

// socketOption reads a SOL_SOCKET option; s.mu is held. SO_ERROR is
// cleared by reading it, as on Linux.
func (s *socket) socketOption(name int) (int, unix.Errno) {
	so := s.ep.SocketOptions()
	switch name {
	case unix.SO_ERROR:
		// Reported once; a later connect starts afresh.
		en := s.soError
		s.soError = 0
		return int(en), 0
	case unix.SO_TYPE:
		if s.dg != nil {
			return unix.SOCK_DGRAM, 0
		}
		return unix.SOCK_STREAM, 0
	case unix.SO_DOMAIN:
		return s.domain, 0
	case unix.SO_PROTOCOL:
		return linuxProtocol(s.proto), 0
	case unix.SO_ACCEPTCONN:
		return b2i(s.state == stateListening), 0
	case unix.SO_REUSEADDR:
		return b2i(so.GetReuseAddress()), 0
	case unix.SO_REUSEPORT:
		return b2i(so.GetReusePort()), 0
	case unix.SO_KEEPALIVE:
		return b2i(so.GetKeepAlive()), 0
	case unix.SO_BROADCAST:
		return b2i(so.GetBroadcast()), 0
	case unix.SO_OOBINLINE, unix.SO_DONTROUTE, unix.SO_PRIORITY:
		return 0, 0
	}
	return 0, unix.ENOPROTOOPT
}

// tcpOption reads an IPPROTO_TCP option of a TCP socket; s.mu is held.
func (s *socket) tcpOption(name int) (int, unix.Errno) {
	so := s.ep.SocketOptions()
	switch name {
	case unix.TCP_NODELAY:
		return b2i(!so.GetDelayOption()), 0
	case unix.TCP_CORK:
		return b2i(so.GetCorkOption()), 0
	case unix.TCP_QUICKACK:
		return b2i(so.GetQuickAck()), 0
	case unix.TCP_KEEPIDLE:
		var o tcpip.KeepaliveIdleOption
		if terr := s.ep.GetSockOpt(&o); terr != nil {
			return 0, errnoOf(terr)
		}
		return int(time.Duration(o) / time.Second), 0
	case unix.TCP_KEEPINTVL:
		var o tcpip.KeepaliveIntervalOption
		if terr := s.ep.GetSockOpt(&o); terr != nil {
			return 0, errnoOf(terr)
		}
		return int(time.Duration(o) / time.Second), 0
	case unix.TCP_KEEPCNT:
		return s.sockOptInt(tcpip.KeepaliveCountOption)
	case unix.TCP_SYNCNT:
		return s.sockOptInt(tcpip.TCPSynCountOption)
	case unix.TCP_USER_TIMEOUT:
		var o tcpip.TCPUserTimeoutOption
		if terr := s.ep.GetSockOpt(&o); terr != nil {
			return 0, errnoOf(terr)
		}
		return int(time.Duration(o) / time.Millisecond), 0
	case unix.TCP_MAXSEG:
		return s.sockOptInt(tcpip.MaxSegOption)
	}
	return 0, unix.ENOPROTOOPT
}

// ipOption reads an IPPROTO_IP option; s.mu is held.
func (s *socket) ipOption(name int) (int, unix.Errno) {
	switch name {
	case unix.IP_TOS:
		return s.sockOptInt(tcpip.IPv4TOSOption)
	case unix.IP_TTL:
		v, en := s.sockOptInt(tcpip.IPv4TTLOption)
		if en == 0 && v <= 0 {
			v = 64 // "use the default"
		}
		return v, en
	case unix.IP_MULTICAST_TTL:
		return s.sockOptInt(tcpip.MulticastTTLOption)
	case unix.IP_MULTICAST_LOOP:
		return b2i(s.ep.SocketOptions().GetMulticastLoop()), 0
	}
	return 0, unix.ENOPROTOOPT
}

// ipv6Option reads an IPPROTO_IPV6 option of an AF_INET6 socket; s.mu is
// held.
func (s *socket) ipv6Option(name int) (int, unix.Errno) {
	switch name {
	case unix.IPV6_V6ONLY:
		return b2i(s.ep.SocketOptions().GetV6Only()), 0
	case unix.IPV6_TCLASS:
		return s.sockOptInt(tcpip.IPv6TrafficClassOption)
	case unix.IPV6_UNICAST_HOPS:
		v, en := s.sockOptInt(tcpip.IPv6HopLimitOption)
		if en == 0 && v < 0 {
			v = 64 // "use the route's default"
		}
		return v, en
	}
	return 0, unix.ENOPROTOOPT
}

// sockOptInt reads one of netstack's integer options.
func (s *socket) sockOptInt(o tcpip.SockOptInt) (int, unix.Errno) {
	v, terr := s.ep.GetSockOptInt(o)
	if terr != nil {
		return 0, errnoOf(terr)
	}
	return v, 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// linuxProtocol is SO_PROTOCOL's answer for a netstack transport.
func linuxProtocol(p tcpip.TransportProtocolNumber) int {
	switch p {
	case udp.ProtocolNumber:
		return unix.IPPROTO_UDP
	case icmp.ProtocolNumber4:
		return unix.IPPROTO_ICMP
	case icmp.ProtocolNumber6:
		return unix.IPPROTO_ICMPV6
	}
	return unix.IPPROTO_TCP
}

// tcpCANameMax is TCP_CA_NAME_MAX: the size of a congestion control name.
const tcpCANameMax = 16

// setCongestion answers setsockopt(TCP_CONGESTION): this socket's
// algorithm, by name (ENOENT for one the stack does not have, as Linux).
func (s *socket) setCongestion(c *intercept.Call, ptr uint64, length int) {
	if length < 1 {
		c.Fail(unix.EINVAL)
		return
	}
	b := make([]byte, min(length, tcpCANameMax-1))
	if err := c.ReadMem(ptr, b); err != nil {
		answerErr(c, err)
		return
	}
	opt := congestionName(b)
	s.mu.Lock()
	terr := s.ep.SetSockOpt(&opt)
	s.mu.Unlock()
	if terr != nil {
		if _, unknown := terr.(*tcpip.ErrNoSuchFile); unknown {
			c.Fail(unix.ENOENT)
			return
		}
		c.Fail(errnoOf(terr))
		return
	}
	c.Return(0)
}

// congestionName is the name TCP_CONGESTION's value gives: up to its
// first NUL.
func congestionName(b []byte) tcpip.CongestionControlOption {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return tcpip.CongestionControlOption(b)
}

// tcpi_options bits (linux/tcp.h).
const (
	tcpiOptTIMESTAMPS = 1
	tcpiOptSACK       = 2
	tcpiOptWSCALE     = 4
)

// controlBlock is the TCP probe's latest state of the connection, or nil.
func (s *socket) controlBlock() *tcp.TCPEndpointState {
	if s.m.blocks == nil {
		return nil
	}
	info, ok := s.ep.Info().(*stack.TransportEndpointInfo)
	if !ok {
		return nil
	}
	cb, ok := s.m.blocks(info.ID)
	if !ok {
		return nil
	}
	return cb
}

// tcpInfo is struct tcp_info, filled from the netstack endpoint's control
// block as far as netstack reports it and from the TCP probe's latest
// state, as ss -i is; s.mu is held.
func (s *socket) tcpInfo() []byte {
	var v tcpip.TCPInfoOption
	info := linux.TCPInfo{}
	if s.ep.GetSockOpt(&v) == nil {
		info.State = uint8(v.State)
		info.RTO = uint32(v.RTO / time.Microsecond)
		info.RTT = uint32(v.RTT / time.Microsecond)
		info.RTTVar = uint32(v.RTTVar / time.Microsecond)
		info.SndSsthresh = v.SndSsthresh
		info.SndCwnd = v.SndCwnd
		switch v.CcState {
		case tcpip.RTORecovery:
			info.CaState = linux.TCP_CA_Loss
		case tcpip.FastRecovery, tcpip.SACKRecovery:
			info.CaState = linux.TCP_CA_Recovery
		case tcpip.Disorder:
			info.CaState = linux.TCP_CA_Disorder
		}
		if v.ReorderSeen {
			info.ReordSeen = 1
		}
		info.Retransmits = uint8(min(v.Retransmits, 255))
		info.Unacked = v.Unacked
	} else if s.state == stateListening {
		info.State = uint8(linux.TCP_LISTEN)
	} else {
		info.State = uint8(linux.TCP_CLOSE)
	}
	if mss, terr := s.ep.GetSockOptInt(tcpip.MaxSegOption); terr == nil {
		info.SndMss = uint32(mss)
		info.Advmss = uint32(mss)
	}
	var retrans uint64
	if st, ok := s.ep.Stats().(*tcp.Stats); ok {
		info.SegsIn = uint32(st.SegmentsReceived.Value())
		info.SegsOut = uint32(st.SegmentsSent.Value())
		retrans = st.SendErrors.Retransmits.Value()
		info.TotalRetrans = uint32(retrans)
	}
	var written uint64
	written, info.BytesReceived = s.byteCounts(s.ep)
	var sndWnd, rcvWnd uint32
	if cb := s.controlBlock(); cb != nil {
		// The windows of Linux 5.5: the peer's last advertised one, and
		// ours (from RCV.NXT to the edge last announced).
		sndWnd = uint32(cb.Sender.SndWnd)
		rcvWnd = uint32(cb.Receiver.RcvNxt.Size(cb.Receiver.RcvAcc))
		// What ss -i shows for the connection, from the same sample.
		snd := &cb.Sender
		info.Sacked = uint32(max(snd.SackedOut, 0))
		info.Lost = tcpinfo.Lost(cb, v.CcState == tcpip.RTORecovery)
		info.BytesAcked, info.BytesSent = tcpinfo.AckedSent(written, cb, tcp.EndpointState(s.ep.State()), retrans)
		info.WindowScale = snd.SndWndScale&0xf | cb.Receiver.RcvWndScale<<4
		if cb.SendTSOk {
			info.Options |= tcpiOptTIMESTAMPS
		}
		if cb.SACKPermitted {
			info.Options |= tcpiOptSACK
		}
		if snd.SndWndScale > 0 || cb.Receiver.RcvWndScale > 0 {
			info.Options |= tcpiOptWSCALE
		}
	}
	// netstack's struct stops at tcpi_reord_seen; the kernel's (x/sys
	// has it from the kernel's headers) goes on, and its size is what
	// programs compare with. Fields netstack cannot know stay zero.
	var whole unix.TCPInfo
	out := make([]byte, unsafe.Sizeof(whole))
	info.MarshalBytes(out)
	binary.NativeEndian.PutUint32(out[unsafe.Offsetof(whole.Snd_wnd):], sndWnd)
	binary.NativeEndian.PutUint32(out[unsafe.Offsetof(whole.Rcv_wnd):], rcvWnd)
	return out
}
