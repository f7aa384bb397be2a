package main

// Scenarios of the network's view: what a program reads and changes over
// NETLINK_ROUTE and NETLINK_SOCK_DIAG and the interface ioctls. On the
// kernel they run in a network namespace set up as the stack is (lo; eth0
// with 52:54:00:12:34:56, MTU 65520, 10.0.2.15/24 and fd00::15/64; default
// routes via 10.0.2.2 and fd00::2), so both runs must see exactly that.

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	scenarios["nl-view"] = nlView
	scenarios["nl-change"] = nlChange
	scenarios["nl-malformed"] = nlMalformed
	scenarios["nl-diag"] = nlDiag
	scenarios["ifioctl"] = ifIoctl
}

// nlSock is a netlink socket of a family, bound by the kernel.
type nlSock struct {
	fd  int
	seq uint32
}

func openNetlink(proto int) *nlSock {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	must(err)
	must(unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}))
	return &nlSock{fd: fd}
}

// nlRequest is one netlink message: a header of typ and flags, body, then
// attributes, each padded to 4 bytes.
func nlRequest(typ, flags uint16, seq uint32, body []byte, attrs ...[]byte) []byte {
	b := make([]byte, unix.SizeofNlMsghdr)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	for _, a := range attrs {
		b = append(b, a...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return b
}

// rtattr is one attribute.
func rtattr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data))
	binary.NativeEndian.PutUint16(b, uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	return append(b, data...)
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func structBytes(v any) []byte {
	b, err := binary.Append(nil, binary.NativeEndian, v)
	must(err)
	return b
}

// send sends one datagram.
func (s *nlSock) send(dgram []byte) {
	must(unix.Sendto(s.fd, dgram, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}))
}

// collect reads messages until the answer to seq ends (NLMSG_DONE, or an
// NLMSG_ERROR for it) and returns them.
func (s *nlSock) collect(seq uint32) []syscall.NetlinkMessage {
	var out []syscall.NetlinkMessage
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		must(err)
		msgs, err := syscall.ParseNetlinkMessage(append([]byte(nil), buf[:n]...))
		must(err)
		for _, m := range msgs {
			out = append(out, m)
			if m.Header.Seq == seq && (m.Header.Type == unix.NLMSG_DONE || m.Header.Type == unix.NLMSG_ERROR) {
				return out
			}
		}
	}
}

// do sends a request (with NLM_F_REQUEST) and returns its answer; a
// request that is not a dump asks for an acknowledgement too, which ends
// the answer.
func (s *nlSock) do(typ, flags uint16, body []byte, attrs ...[]byte) []syscall.NetlinkMessage {
	if flags&unix.NLM_F_DUMP != unix.NLM_F_DUMP {
		flags |= unix.NLM_F_ACK
	}
	s.seq++
	s.send(nlRequest(typ, flags|unix.NLM_F_REQUEST, s.seq, body, attrs...))
	return s.collect(s.seq)
}

// change sends a request that changes something and returns the errno
// of its acknowledgement.
func (s *nlSock) change(typ, flags uint16, body []byte, attrs ...[]byte) string {
	msgs := s.do(typ, flags|unix.NLM_F_ACK, body, attrs...)
	return ackOf(msgs[len(msgs)-1])
}

// ackOf renders an NLMSG_ERROR as its errno name ("ok" for 0).
func ackOf(m syscall.NetlinkMessage) string {
	if m.Header.Type != unix.NLMSG_ERROR {
		return fmt.Sprintf("message type %d", m.Header.Type)
	}
	if len(m.Data) < 4 {
		return "short NLMSG_ERROR"
	}
	e := -int32(binary.NativeEndian.Uint32(m.Data))
	if e == 0 {
		return "ok"
	}
	return unix.ErrnoName(unix.Errno(e))
}

func nlAttrs(b []byte) map[uint16][]byte {
	out := map[uint16][]byte{}
	attrs, err := syscall.ParseNetlinkRouteAttr(&syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.RTM_NEWLINK}, Data: append(make([]byte, unix.SizeofIfInfomsg), b...)})
	must(err)
	for _, a := range attrs {
		out[a.Attr.Type] = a.Value
	}
	return out
}

func cstr(b []byte) string { return strings.TrimRight(string(b), "\x00") }

func ipString(b []byte) string {
	ip, ok := netip.AddrFromSlice(b)
	if !ok {
		return fmt.Sprintf("% x", b)
	}
	return ip.String()
}

// shownFlags are the interface flags both runs can agree on: a veth's
// and the stack's NIC have the same ones.
var shownFlags = []struct {
	bit  uint32
	name string
}{{unix.IFF_UP, "UP"}, {unix.IFF_BROADCAST, "BROADCAST"}, {unix.IFF_LOOPBACK, "LOOPBACK"},
	{unix.IFF_RUNNING, "RUNNING"}, {unix.IFF_MULTICAST, "MULTICAST"}, {unix.IFF_LOWER_UP, "LOWER_UP"}}

func flagNames(f uint32) string {
	var names []string
	for _, s := range shownFlags {
		if f&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

// links prints every interface the dump lists.
func (s *nlSock) links(step string) {
	for _, m := range s.do(unix.RTM_GETLINK, unix.NLM_F_DUMP, structBytes(unix.IfInfomsg{})) {
		if m.Header.Type != unix.RTM_NEWLINK {
			continue
		}
		var ifi unix.IfInfomsg
		binary.Decode(m.Data, binary.NativeEndian, &ifi)
		at := nlAttrs(m.Data[unix.SizeofIfInfomsg:])
		say(step, ifi.Index, " ", cstr(at[unix.IFLA_IFNAME]), " <", flagNames(ifi.Flags), "> mtu ", binary.NativeEndian.Uint32(at[unix.IFLA_MTU]),
			" type ", ifi.Type, " address ", net.HardwareAddr(at[unix.IFLA_ADDRESS]), " brd ", net.HardwareAddr(at[unix.IFLA_BROADCAST]),
			" stats64 ", len(at[unix.IFLA_STATS64]))
	}
}

// addrs prints the addresses of family.
func (s *nlSock) addrs(step string, family uint8) {
	for _, m := range s.do(unix.RTM_GETADDR, unix.NLM_F_DUMP, structBytes(unix.IfAddrmsg{Family: family})) {
		if m.Header.Type != unix.RTM_NEWADDR {
			continue
		}
		var ifa unix.IfAddrmsg
		binary.Decode(m.Data, binary.NativeEndian, &ifa)
		at := nlAttrs(m.Data[unix.SizeofIfAddrmsg:])
		line := fmt.Sprint(ifa.Index, " ", ipString(at[unix.IFA_ADDRESS]), "/", ifa.Prefixlen, " scope ", ifa.Scope)
		if b, ok := at[unix.IFA_LOCAL]; ok {
			line += " local " + ipString(b)
		}
		if b, ok := at[unix.IFA_BROADCAST]; ok {
			line += " brd " + ipString(b)
		}
		if b, ok := at[unix.IFA_LABEL]; ok {
			line += " label " + cstr(b)
		}
		say(step, line)
	}
}

// routes prints the routes of family, main and local tables.
func (s *nlSock) routes(step string, family uint8) {
	for _, m := range s.do(unix.RTM_GETROUTE, unix.NLM_F_DUMP, structBytes(unix.RtMsg{Family: family})) {
		if m.Header.Type != unix.RTM_NEWROUTE {
			continue
		}
		say(step, routeLine(m))
	}
}

func routeLine(m syscall.NetlinkMessage) string {
	var rtm unix.RtMsg
	binary.Decode(m.Data, binary.NativeEndian, &rtm)
	at := nlAttrs(m.Data[unix.SizeofRtMsg:])
	dst := "default"
	if b, ok := at[unix.RTA_DST]; ok {
		dst = fmt.Sprint(ipString(b), "/", rtm.Dst_len)
	}
	line := fmt.Sprint("table ", rtm.Table, " type ", rtm.Type, " ", dst, " proto ", rtm.Protocol, " scope ", rtm.Scope)
	for _, a := range []struct {
		t    uint16
		name string
	}{{unix.RTA_GATEWAY, "via"}, {unix.RTA_PREFSRC, "src"}} {
		if b, ok := at[a.t]; ok {
			line += " " + a.name + " " + ipString(b)
		}
	}
	if b, ok := at[unix.RTA_OIF]; ok {
		line += fmt.Sprint(" oif ", binary.NativeEndian.Uint32(b))
	}
	if b, ok := at[unix.RTA_PRIORITY]; ok {
		line += fmt.Sprint(" metric ", binary.NativeEndian.Uint32(b))
	}
	return line
}

// neighbours prints the permanent neighbour entries of family: the
// others come and go with traffic.
func (s *nlSock) neighbours(step string, family uint8) {
	n := 0
	for _, m := range s.do(unix.RTM_GETNEIGH, unix.NLM_F_DUMP, structBytes(unix.NdMsg{Family: family})) {
		if m.Header.Type != unix.RTM_NEWNEIGH {
			continue
		}
		var nd unix.NdMsg
		binary.Decode(m.Data, binary.NativeEndian, &nd)
		if nd.State != unix.NUD_PERMANENT {
			continue
		}
		at := nlAttrs(m.Data[unix.SizeofNdMsg:])
		say(step, nd.Ifindex, " ", ipString(at[unix.NDA_DST]), " lladdr ", net.HardwareAddr(at[unix.NDA_LLADDR]))
		n++
	}
	say(step+" permanent entries", n)
}

func nlView() {
	s := openNetlink(unix.NETLINK_ROUTE)
	s.links("link")
	s.addrs("address", unix.AF_UNSPEC)
	s.addrs("IPv6 address", unix.AF_INET6)
	s.routes("route", unix.AF_INET)
	s.routes("IPv6 route", unix.AF_INET6)
	s.neighbours("neighbour", unix.AF_UNSPEC)
	msgs := s.do(unix.RTM_GETLINK, 0, structBytes(unix.IfInfomsg{}), rtattr(unix.IFLA_IFNAME, []byte("eth0\x00")))
	say("get eth0 by name", len(msgs), " message of type ", msgs[0].Header.Type)
	msgs = s.do(unix.RTM_GETROUTE, 0, structBytes(unix.RtMsg{Family: unix.AF_INET, Dst_len: 32}), rtattr(unix.RTA_DST, []byte{198, 51, 100, 7}))
	say("route get 198.51.100.7", routeLine(msgs[0]))
	msgs = s.do(unix.RTM_GETROUTE, 0, structBytes(unix.RtMsg{Family: unix.AF_INET6, Dst_len: 128}),
		rtattr(unix.RTA_DST, netip.MustParseAddr("fd00::9").AsSlice()))
	say("route get fd00::9", routeLine(msgs[0]))
	// Go's net package reads the same tables.
	ifs, err := net.Interfaces()
	say("net.Interfaces", errno(err))
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		fmt.Println(" ", i.Index, i.Name, i.MTU, i.HardwareAddr, i.Flags, addrs)
	}
	addrs, err := net.InterfaceAddrs()
	say("net.InterfaceAddrs", addrs, " ", errno(err))
}

// addrMsg is ip addr add/del's request for ip/bits on interface index
// (an IPv4 one with its broadcast, as brd + adds it).
func addrMsg(index uint32, ip string, bits uint8) ([]byte, [][]byte) {
	a := netip.MustParseAddr(ip)
	family := uint8(unix.AF_INET6)
	if a.Is4() {
		family = unix.AF_INET
	}
	attrs := [][]byte{rtattr(unix.IFA_LOCAL, a.AsSlice()), rtattr(unix.IFA_ADDRESS, a.AsSlice())}
	if a.Is4() {
		brd := netip.PrefixFrom(a, int(bits)).Masked().Addr().As4()
		binary.BigEndian.PutUint32(brd[:], binary.BigEndian.Uint32(brd[:])|(1<<(32-bits)-1))
		attrs = append(attrs, rtattr(unix.IFA_BROADCAST, brd[:]))
	}
	return structBytes(unix.IfAddrmsg{Family: family, Prefixlen: bits, Index: index}), attrs
}

// routeMsg is ip route add/del's request for dst via a gateway.
func routeMsg(dst string, via string) ([]byte, [][]byte) {
	p := netip.MustParsePrefix(dst)
	family := uint8(unix.AF_INET6)
	if p.Addr().Is4() {
		family = unix.AF_INET
	}
	rtm := unix.RtMsg{Family: family, Dst_len: uint8(p.Bits()), Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT,
		Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST}
	return structBytes(rtm), [][]byte{rtattr(unix.RTA_DST, p.Addr().AsSlice()), rtattr(unix.RTA_GATEWAY, netip.MustParseAddr(via).AsSlice())}
}

// linkState prints eth0's flags and MTU as RTM_GETLINK answers them.
func (s *nlSock) linkState(step string) {
	msgs := s.do(unix.RTM_GETLINK, 0, structBytes(unix.IfInfomsg{Index: 2}))
	if msgs[0].Header.Type != unix.RTM_NEWLINK {
		say(step, ackOf(msgs[0]))
		return
	}
	var ifi unix.IfInfomsg
	binary.Decode(msgs[0].Data, binary.NativeEndian, &ifi)
	at := nlAttrs(msgs[0].Data[unix.SizeofIfInfomsg:])
	say(step, "<", flagNames(ifi.Flags), "> mtu ", binary.NativeEndian.Uint32(at[unix.IFLA_MTU]))
}

// listenOn reports whether a listener on ip accepts a connection to it.
func listenOn(ip string) string {
	a := netip.MustParseAddr(ip)
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: a.As4()}); err != nil {
		return "bind " + errno(err)
	}
	must(unix.Listen(ln, 1))
	sa, _ := unix.Getsockname(ln)
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	defer unix.Close(c)
	if err := unix.Connect(c, &unix.SockaddrInet4{Addr: a.As4(), Port: sa.(*unix.SockaddrInet4).Port}); err != nil {
		return "connect " + errno(err)
	}
	// Closed with a reset: no connection is left in TIME_WAIT on the
	// address. (The source address is not shown: which of the
	// interface's addresses a connection to itself takes is the stack's
	// choice.)
	must(unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}))
	return "connected"
}

// holdConnection opens a listener on ip and a connection to it, and
// returns what closes them.
func holdConnection(ip string) func() {
	a := netip.MustParseAddr(ip)
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	must(unix.Bind(ln, &unix.SockaddrInet4{Addr: a.As4()}))
	must(unix.Listen(ln, 1))
	sa, _ := unix.Getsockname(ln)
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	must(unix.Connect(c, &unix.SockaddrInet4{Addr: a.As4(), Port: sa.(*unix.SockaddrInet4).Port}))
	return func() {
		must(unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}))
		unix.Close(c)
		unix.Close(ln)
	}
}

func nlChange() {
	s := openNetlink(unix.NETLINK_ROUTE)
	const create = unix.NLM_F_CREATE | unix.NLM_F_EXCL
	body, attrs := addrMsg(2, "10.0.2.99", 24)
	say("ip addr add 10.0.2.99/24 dev eth0", s.change(unix.RTM_NEWADDR, create, body, attrs...))
	s.addrs("address", unix.AF_INET)
	say("a listener on 10.0.2.99", listenOn("10.0.2.99"))
	say("the same again", s.change(unix.RTM_NEWADDR, create, body, attrs...))
	// A connection on the address outlives it, and keeps no one else's
	// bind to it going.
	release := holdConnection("10.0.2.99")
	say("del", s.change(unix.RTM_DELADDR, 0, body, attrs...))
	say("del again", s.change(unix.RTM_DELADDR, 0, body, attrs...))
	say("a listener on 10.0.2.99 after del, with a connection on it open", listenOn("10.0.2.99"))
	release()
	body, attrs = addrMsg(99, "10.0.2.99", 24)
	say("add on no interface", s.change(unix.RTM_NEWADDR, create, body, attrs...))
	body, attrs = addrMsg(2, "fd00::99", 64)
	say("ip addr add fd00::99/64 dev eth0 nodad", s.change(unix.RTM_NEWADDR, create, body,
		append(attrs, rtattr(unix.IFA_FLAGS, u32(unix.IFA_F_NODAD)))...))
	s.addrs("IPv6 address", unix.AF_INET6)
	say("del", s.change(unix.RTM_DELADDR, 0, body, attrs...))

	body, attrs = routeMsg("192.0.2.0/24", "10.0.2.2")
	say("ip route add 192.0.2.0/24 via 10.0.2.2", s.change(unix.RTM_NEWROUTE, create, body, attrs...))
	say("the same again", s.change(unix.RTM_NEWROUTE, create, body, attrs...))
	s.routes("route", unix.AF_INET)
	msgs := s.do(unix.RTM_GETROUTE, 0, structBytes(unix.RtMsg{Family: unix.AF_INET, Dst_len: 32}), rtattr(unix.RTA_DST, []byte{192, 0, 2, 1}))
	say("route get 192.0.2.1", routeLine(msgs[0]))
	say("del", s.change(unix.RTM_DELROUTE, 0, body, attrs...))
	say("del again", s.change(unix.RTM_DELROUTE, 0, body, attrs...))
	body, attrs = routeMsg("2001:db8::/32", "fd00::2")
	say("ip route add 2001:db8::/32 via fd00::2", s.change(unix.RTM_NEWROUTE, create, body, attrs...))
	s.routes("IPv6 route", unix.AF_INET6)
	say("del", s.change(unix.RTM_DELROUTE, 0, body, attrs...))

	nd := structBytes(unix.NdMsg{Family: unix.AF_INET, Ifindex: 2, State: unix.NUD_PERMANENT})
	lladdr := rtattr(unix.NDA_LLADDR, []byte{2, 0, 0, 0, 0, 7})
	say("ip neigh add 10.0.2.7", s.change(unix.RTM_NEWNEIGH, create, nd, rtattr(unix.NDA_DST, []byte{10, 0, 2, 7}), lladdr))
	nd6 := structBytes(unix.NdMsg{Family: unix.AF_INET6, Ifindex: 2, State: unix.NUD_PERMANENT})
	dst6 := rtattr(unix.NDA_DST, netip.MustParseAddr("fd00::7").AsSlice())
	say("ip neigh add fd00::7", s.change(unix.RTM_NEWNEIGH, create, nd6, dst6, lladdr))
	s.neighbours("neighbour", unix.AF_UNSPEC)
	say("ip neigh del fd00::7", s.change(unix.RTM_DELNEIGH, 0, nd6, dst6))
	say("again", s.change(unix.RTM_DELNEIGH, 0, nd6, dst6))
	s.neighbours("neighbour", unix.AF_INET6)

	ifi := structBytes(unix.IfInfomsg{Index: 2})
	say("ip link set eth0 mtu 1400", s.change(unix.RTM_NEWLINK, 0, ifi, rtattr(unix.IFLA_MTU, u32(1400))))
	s.linkState("eth0")
	say("mtu 10", s.change(unix.RTM_NEWLINK, 0, ifi, rtattr(unix.IFLA_MTU, u32(10))))
	say("mtu back to 65520", s.change(unix.RTM_NEWLINK, 0, ifi, rtattr(unix.IFLA_MTU, u32(65520))))
	say("set link 99", s.change(unix.RTM_NEWLINK, 0, structBytes(unix.IfInfomsg{Index: 99}), rtattr(unix.IFLA_MTU, u32(1400))))
	// Last: Linux drops the routes through a link that goes down.
	say("ip link set eth0 down", s.change(unix.RTM_NEWLINK, 0, structBytes(unix.IfInfomsg{Index: 2, Change: unix.IFF_UP})))
	s.linkState("eth0")
	say("ip link set eth0 up", s.change(unix.RTM_NEWLINK, 0, structBytes(unix.IfInfomsg{Index: 2, Flags: unix.IFF_UP, Change: unix.IFF_UP})))
	s.linkState("eth0")
}

// nlMalformed sends what a broken program might and prints what comes
// back before the answer to a well-formed request sent after it.
func nlMalformed() {
	s := openNetlink(unix.NETLINK_ROUTE)
	try := func(step string, dgram []byte) {
		s.send(dgram)
		s.seq = 1000
		s.send(nlRequest(unix.NLMSG_NOOP, unix.NLM_F_REQUEST|unix.NLM_F_ACK, s.seq, nil))
		var got []string
		for _, m := range s.collect(s.seq) {
			if m.Header.Seq == s.seq {
				break
			}
			if m.Header.Type == unix.NLMSG_ERROR {
				got = append(got, "error "+ackOf(m))
			} else {
				got = append(got, fmt.Sprint("type ", m.Header.Type))
			}
		}
		say(step, got)
	}
	getlink := nlRequest(unix.RTM_GETLINK, unix.NLM_F_REQUEST, 1, structBytes(unix.IfInfomsg{Index: 1}))
	short := append([]byte(nil), getlink...)
	binary.NativeEndian.PutUint32(short, 8)
	try("length shorter than a header", short)
	long := append([]byte(nil), getlink...)
	binary.NativeEndian.PutUint32(long, uint32(len(long)+4))
	try("length past the datagram", long)
	try("a header cut short", getlink[:10])
	try("not a request", nlRequest(unix.RTM_GETLINK, 0, 1, structBytes(unix.IfInfomsg{Index: 1})))
	try("type past RTM_MAX", nlRequest(0x3ff, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 1, make([]byte, 16)))
	try("RTM_NEWADDR with 2 bytes of body", nlRequest(unix.RTM_NEWADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE, 1, []byte{2, 24}))
	body, attrs := addrMsg(2, "10.0.2.99", 24)
	bad := append([]byte(nil), attrs[0]...)
	binary.NativeEndian.PutUint16(bad, 200) // longer than the message
	try("an attribute longer than the message", nlRequest(unix.RTM_NEWADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE, 1, body, bad))
	try("an address of 3 bytes", nlRequest(unix.RTM_NEWADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE, 1, body,
		rtattr(unix.IFA_LOCAL, []byte{10, 0, 2})))
	try("a prefix of 33 bits", nlRequest(unix.RTM_NEWADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE, 1,
		structBytes(unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: 33, Index: 2}), attrs...))
	try("get link 99", nlRequest(unix.RTM_GETLINK, unix.NLM_F_REQUEST, 1, structBytes(unix.IfInfomsg{Index: 99})))
	try("two requests in one datagram", append(nlRequest(unix.RTM_GETLINK, unix.NLM_F_REQUEST, 1, structBytes(unix.IfInfomsg{Index: 99})),
		nlRequest(unix.RTM_GETLINK, unix.NLM_F_REQUEST, 2, structBytes(unix.IfInfomsg{Index: 1}))...))
	try("NLMSG_NOOP with an ack", nlRequest(unix.NLMSG_NOOP, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 1, nil))
	try("a route with no family", nlRequest(unix.RTM_NEWROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE, 1,
		structBytes(unix.RtMsg{Family: 99, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST})))
	// A receive into a buffer too small for the datagram: the rest is
	// lost, and MSG_TRUNC says so.
	s.seq++
	s.send(nlRequest(unix.RTM_GETLINK, unix.NLM_F_REQUEST, s.seq, structBytes(unix.IfInfomsg{Index: 1})))
	buf := make([]byte, 8)
	n, _, _, _, err := unix.Recvmsg(s.fd, buf, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
	say("peek with MSG_TRUNC returns the full length", n > 8, " ", errno(err))
	n, _, flags, _, err := unix.Recvmsg(s.fd, buf, nil, 0)
	say("recvmsg into 8 bytes", n, " MSG_TRUNC ", flags&unix.MSG_TRUNC != 0, " ", errno(err))
	sa, err := unix.Getsockname(s.fd)
	nl, _ := sa.(*unix.SockaddrNetlink)
	say("getsockname", nl != nil && nl.Pid != 0, " ", errno(err))

	d := openNetlink(unix.NETLINK_SOCK_DIAG)
	req := make([]byte, 56)
	req[0], req[1] = 200, unix.IPPROTO_TCP
	msgs := d.do(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, req)
	say("sock_diag for family 200", ackOf(msgs[len(msgs)-1]))
	msgs = d.do(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, []byte{unix.AF_INET, unix.IPPROTO_TCP})
	say("sock_diag with a short request", ackOf(msgs[len(msgs)-1]))
}

// nlDiag: sock_diag lists the program's own TCP and UDP sockets, IPv4 and
// IPv6, with tcp_info and the congestion control.
func nlDiag() {
	ln, port := listener(0)
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	must(unix.Connect(c, loopback(port)))
	a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	must(err)
	ln6, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	must(unix.Bind(ln6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}))
	must(unix.Listen(ln6, 4))
	u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	must(unix.Bind(u, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	u6, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	must(unix.Connect(u6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}, Port: 9}))
	names := map[uint32]string{}
	for fd, name := range map[int]string{ln: "listener", c: "client", a: "accepted", ln6: "IPv6 listener", u: "UDP", u6: "IPv6 UDP"} {
		var st unix.Stat_t
		must(unix.Fstat(fd, &st))
		names[uint32(st.Ino)] = name
	}
	cc, _ := unix.GetsockoptString(c, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	// The length of struct tcp_info is the stack's own (it grows with
	// Linux's versions): sock_diag gives what getsockopt gives.
	info := make([]byte, 512)
	infoLen := uint32(len(info))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(c), unix.IPPROTO_TCP, unix.TCP_INFO, uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&infoLen)), 0)
	must(errnoOrNil(e))
	d := openNetlink(unix.NETLINK_SOCK_DIAG)
	for _, q := range []struct {
		family, proto uint8
	}{{unix.AF_INET, unix.IPPROTO_TCP}, {unix.AF_INET6, unix.IPPROTO_TCP}, {unix.AF_INET, unix.IPPROTO_UDP}, {unix.AF_INET6, unix.IPPROTO_UDP}} {
		req := make([]byte, 56)
		req[0], req[1], req[2] = q.family, q.proto, 1<<(2-1)|1<<(4-1) // INET_DIAG_INFO, INET_DIAG_CONG
		binary.NativeEndian.PutUint32(req[4:], ^uint32(0))
		var lines []string
		msgs := d.do(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, req)
		for _, m := range msgs {
			if m.Header.Type != unix.SOCK_DIAG_BY_FAMILY || len(m.Data) < 72 {
				continue
			}
			name, ok := names[binary.NativeEndian.Uint32(m.Data[68:])]
			if !ok {
				continue // not ours (on the kernel: none other in the namespace)
			}
			ports := func(off int) string {
				if binary.BigEndian.Uint16(m.Data[off:]) == 0 {
					return "0"
				}
				return "nonzero"
			}
			src, dst := m.Data[8:24], m.Data[24:40]
			if q.family == unix.AF_INET {
				src, dst = src[:4], dst[:4]
			}
			line := fmt.Sprint(name, ": family ", m.Data[0], " state ", m.Data[1], " ", ipString(src), ":", ports(4), " ", ipString(dst), ":", ports(6))
			at := nlAttrs(m.Data[72:])
			if info, ok := at[2]; ok {
				line += fmt.Sprint(" tcp_info state ", info[0], " as long as getsockopt's ", len(info) == int(infoLen))
			}
			if b, ok := at[4]; ok {
				line += fmt.Sprint(" cong is TCP_CONGESTION's ", cstr(b) == cc)
			}
			lines = append(lines, line)
		}
		sort.Strings(lines)
		say(fmt.Sprint("family ", q.family, " protocol ", q.proto), len(lines), " of ours; dump ends with ", msgs[len(msgs)-1].Header.Type)
		for _, l := range lines {
			fmt.Println("  " + l)
		}
	}
}

// ifreq is struct ifreq: a name and a 24-byte union.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data [24]byte
}

func ioctlIfreq(fd int, req uint, ifr *ifreq) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(ifr)))
	return errnoOrNil(e)
}

func named(name string) *ifreq {
	var r ifreq
	copy(r.name[:], name)
	return &r
}

func sockaddrString(b []byte) string {
	return fmt.Sprint("family ", binary.NativeEndian.Uint16(b), " ", netip.AddrFrom4([4]byte(b[4:8])))
}

func ifIoctl() {
	for _, sock := range []struct {
		name           string
		domain, sotype int
	}{{"AF_INET UDP", unix.AF_INET, unix.SOCK_DGRAM}, {"AF_INET6 TCP", unix.AF_INET6, unix.SOCK_STREAM}, {"AF_UNIX", unix.AF_UNIX, unix.SOCK_DGRAM}} {
		fd, err := unix.Socket(sock.domain, sock.sotype|unix.SOCK_CLOEXEC, 0)
		must(err)
		say("on an "+sock.name+" socket", "")
		// SIOCGIFCONF: first the length needed, then the entries.
		var conf struct {
			len int32
			_   int32
			buf uintptr
		}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFCONF, uintptr(unsafe.Pointer(&conf)))
		say("  SIOCGIFCONF length", conf.len, " ", errno(errnoOrNil(e)))
		entries := make([]ifreq, 8)
		conf.len, conf.buf = int32(len(entries)*40), uintptr(unsafe.Pointer(&entries[0]))
		_, _, e = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFCONF, uintptr(unsafe.Pointer(&conf)))
		for _, r := range entries[:conf.len/40] {
			say("  SIOCGIFCONF", cstr(r.name[:]), " ", sockaddrString(r.data[:]), " ", errno(errnoOrNil(e)))
		}
		conf.len = 40 + 20 // room for one entry and a half
		_, _, e = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFCONF, uintptr(unsafe.Pointer(&conf)))
		say("  SIOCGIFCONF into one and a half entries", conf.len, " ", errno(errnoOrNil(e)))
		for _, name := range []string{"lo", "eth0", "nosuch0"} {
			r := named(name)
			err := ioctlIfreq(fd, unix.SIOCGIFINDEX, r)
			say("  "+name+" SIOCGIFINDEX", binary.NativeEndian.Uint32(r.data[:]), " ", errno(err))
			r = named(name)
			err = ioctlIfreq(fd, unix.SIOCGIFFLAGS, r)
			say("  "+name+" SIOCGIFFLAGS", flagNames(uint32(binary.NativeEndian.Uint16(r.data[:]))), " ", errno(err))
			r = named(name)
			err = ioctlIfreq(fd, unix.SIOCGIFMTU, r)
			say("  "+name+" SIOCGIFMTU", binary.NativeEndian.Uint32(r.data[:]), " ", errno(err))
			r = named(name)
			err = ioctlIfreq(fd, unix.SIOCGIFHWADDR, r)
			say("  "+name+" SIOCGIFHWADDR", "type ", binary.NativeEndian.Uint16(r.data[:]), " ", net.HardwareAddr(r.data[2:8]), " ", errno(err))
			for _, q := range []struct {
				req  uint
				name string
			}{{unix.SIOCGIFADDR, "SIOCGIFADDR"}, {unix.SIOCGIFNETMASK, "SIOCGIFNETMASK"}, {unix.SIOCGIFBRDADDR, "SIOCGIFBRDADDR"}} {
				r = named(name)
				err = ioctlIfreq(fd, q.req, r)
				say("  "+name+" "+q.name, sockaddrString(r.data[:]), " ", errno(err))
			}
		}
		for _, index := range []uint32{1, 2, 99} {
			var r ifreq
			binary.NativeEndian.PutUint32(r.data[:], index)
			err := ioctlIfreq(fd, unix.SIOCGIFNAME, &r)
			say(fmt.Sprint("  SIOCGIFNAME ", index), cstr(r.name[:]), " ", errno(err))
		}
		_, _, e = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFINDEX, 0)
		say("  SIOCGIFINDEX with a NULL ifreq", errno(errnoOrNil(e)))
		unix.Close(fd)
	}
	// A change: the MTU, through the ioctl, and back.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	r := named("eth0")
	binary.NativeEndian.PutUint32(r.data[:], 1400)
	say("SIOCSIFMTU 1400", errno(ioctlIfreq(fd, unix.SIOCSIFMTU, r)))
	r = named("eth0")
	err = ioctlIfreq(fd, unix.SIOCGIFMTU, r)
	say("SIOCGIFMTU", binary.NativeEndian.Uint32(r.data[:]), " ", errno(err))
	binary.NativeEndian.PutUint32(r.data[:], 65520)
	say("SIOCSIFMTU 65520", errno(ioctlIfreq(fd, unix.SIOCSIFMTU, r)))
}
