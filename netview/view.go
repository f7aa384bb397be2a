// Package netview presents a user-level stack's network to the programs on
// it as Linux presents a network namespace's: its interfaces, addresses,
// routes and neighbours over NETLINK_ROUTE, its sockets over
// NETLINK_SOCK_DIAG, and its interfaces to the SIOCGIF* ioctls. Changes a
// program asks for (ip addr add, ip route add, ip link set) are made to the
// stack through its own methods, and refused with the errno Linux gives
// where the stack cannot make them.
//
// The package speaks the wire format only; package sockets carries the
// program's netlink sockets and ioctls to it.
package netview

import (
	"net/netip"
	"os"
	"slices"
	"sort"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/netstack"
)

// Stack is what the view needs of a stack: its netstack, read directly,
// and the methods that change it (*ustack.Stack has them). Their errors
// wrap the errno to answer.
type Stack interface {
	Netstack() *stack.Stack
	AddAddress(dev string, p netip.Prefix) error
	RemoveAddress(dev string, p netip.Prefix) error
	AddRoute(dst netip.Prefix, via netip.Addr, dev string) error
	RemoveRoute(dst netip.Prefix, via netip.Addr, dev string) error
	SetLinkUp(dev string, up bool) error
	SetMTU(dev string, mtu int) error
}

// Programs is what the socket layer knows of the endpoints programs hold
// (sockets.Manager has it): sock_diag reports the inode of the program's
// socket, so that ss -p finds the process in /proc, and its tcp_info.
type Programs interface {
	// Holder tells who holds the program socket served by ep.
	Holder(ep tcpip.Endpoint) (Holder, bool)
	// TCPInfo returns struct tcp_info for a TCP endpoint, as getsockopt
	// TCP_INFO gives it to a program.
	TCPInfo(ep tcpip.Endpoint) []byte
}

// Holder is the program socket that an endpoint serves.
type Holder struct {
	Inode  uint64 // of the program's socket (its fd in /proc/PID/fd)
	UID    uint32 // the user of the process that holds it
	Family int    // AF_INET or AF_INET6: an AF_INET6 socket may carry IPv4
}

// ControlBlocks gives the latest TCP control block netstack's probe
// sampled for a connection (observe.Hub's Latest): the send queue.
type ControlBlocks func(stack.TransportEndpointID) (*tcp.TCPEndpointState, bool)

// View answers for one stack.
type View struct {
	st     Stack
	ns     *stack.Stack
	progs  Programs      // nil: sock_diag reports no inodes and no tcp_info
	blocks ControlBlocks // nil: send queues are reported empty
	uid    uint32        // of the endpoints no program holds: ours
}

// New returns the view of st. progs and blocks may be nil.
func New(st Stack, progs Programs, blocks ControlBlocks) *View {
	return &View{st: st, ns: st.Netstack(), progs: progs, blocks: blocks, uid: uint32(os.Getuid())}
}

// link is one interface as programs see it.
type link struct {
	index int32 // the ifindex programs see
	id    tcpip.NICID
	info  stack.NICInfo
}

// Interface indexes: Linux gives lo index 1, and programs count on it (a
// fresh network namespace has lo as 1, its first other device as 2). The
// stack numbers its NICs its own way (eth0 is 1, lo 2), so the loopback
// NIC and NIC 1 swap numbers; every other NIC keeps its own.
func (v *View) loopbackNIC(infos map[tcpip.NICID]stack.NICInfo) tcpip.NICID {
	var lo tcpip.NICID
	for id, info := range infos {
		if info.Flags.Loopback && (lo == 0 || id < lo) {
			lo = id
		}
	}
	return lo
}

func indexOf(id, lo tcpip.NICID) int32 {
	switch {
	case lo == 0 || lo == 1:
		return int32(id)
	case id == lo:
		return 1
	case id == 1:
		return int32(lo)
	}
	return int32(id)
}

// links lists the interfaces by index.
func (v *View) links() []link {
	infos := v.ns.NICInfo()
	lo := v.loopbackNIC(infos)
	out := make([]link, 0, len(infos))
	for id, info := range infos {
		out = append(out, link{index: indexOf(id, lo), id: id, info: info})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	return out
}

// linkByIndex finds the interface programs know as index.
func (v *View) linkByIndex(index int32) (link, bool) {
	for _, l := range v.links() {
		if l.index == index {
			return l, true
		}
	}
	return link{}, false
}

// linkByName finds the interface called name.
func (v *View) linkByName(name string) (link, bool) {
	for _, l := range v.links() {
		if l.info.Name == name {
			return l, true
		}
	}
	return link{}, false
}

// indexOfNIC is the index programs see for the stack's NIC id.
func (v *View) indexOfNIC(id tcpip.NICID) int32 {
	return indexOf(id, v.loopbackNIC(v.ns.NICInfo()))
}

// up reports whether the interface is up: netstack calls a NIC that is
// enabled "running" (its Up is always true).
func (l link) up() bool { return l.info.Flags.Running }

// flags are the interface's IFF_* flags, as SIOCGIFFLAGS and ifi_flags
// report them. A link that is up has its carrier: the stack's links have
// no other notion of one.
func (l link) flags() uint32 {
	var f uint32
	if l.up() {
		f |= unix.IFF_UP | unix.IFF_RUNNING | unix.IFF_LOWER_UP
	}
	if l.info.Flags.Loopback {
		f |= unix.IFF_LOOPBACK
	} else {
		f |= unix.IFF_BROADCAST | unix.IFF_MULTICAST
	}
	if l.info.Flags.Promiscuous {
		f |= unix.IFF_PROMISC
	}
	return f
}

// hwType is the ARPHRD_* type of the interface.
func (l link) hwType() uint16 {
	switch {
	case l.info.Flags.Loopback:
		return unix.ARPHRD_LOOPBACK
	case l.info.ARPHardwareType != header.ARPHardwareNone:
		return uint16(l.info.ARPHardwareType)
	case len(l.info.LinkAddress) == header.EthernetAddressSize:
		return unix.ARPHRD_ETHER
	}
	return unix.ARPHRD_NONE
}

// mac is the interface's hardware address, zeros for the loopback as
// Linux reports it, and its broadcast address.
func (l link) mac() (addr, brd []byte) {
	if l.info.Flags.Loopback {
		return make([]byte, 6), make([]byte, 6)
	}
	addr = []byte(l.info.LinkAddress)
	if len(addr) == 0 {
		return nil, nil
	}
	brd = make([]byte, len(addr))
	for i := range brd {
		brd[i] = 0xff
	}
	return addr, brd
}

// addr is one address of an interface.
type addr struct {
	link   link
	prefix netip.Prefix
}

// v4 reports whether the address is IPv4.
func (a addr) v4() bool { return a.prefix.Addr().Is4() }

// broadcast is the IPv4 broadcast address of the address's subnet, which
// Linux interfaces configured the usual way (ip addr add ... brd +, DHCP)
// carry; none on the loopback or on /31 and /32 links.
func (a addr) broadcast() (netip.Addr, bool) {
	if !a.v4() || a.link.info.Flags.Loopback || a.prefix.Bits() > 30 {
		return netip.Addr{}, false
	}
	return broadcastOf(a.prefix), true
}

// broadcastOf is the last address of an IPv4 prefix.
func broadcastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// scope is the address's RT_SCOPE_*: host for loopback addresses, link
// for IPv6 link-local ones.
func (a addr) scope() uint8 {
	switch ip := a.prefix.Addr(); {
	case ip.IsLoopback():
		return unix.RT_SCOPE_HOST
	case ip.IsLinkLocalUnicast():
		return unix.RT_SCOPE_LINK
	}
	return unix.RT_SCOPE_UNIVERSE
}

// addrs lists the addresses of the given family (AF_INET, AF_INET6 or
// AF_UNSPEC for both), IPv4 first, each family by interface index.
func (v *View) addrs(family uint8) []addr {
	var v4, v6 []addr
	for _, l := range v.links() {
		first6 := len(v6)
		for _, pa := range l.info.ProtocolAddresses {
			ip := netstack.NetipAddr(pa.AddressWithPrefix.Address)
			if !ip.IsValid() {
				continue
			}
			if pa.Protocol != header.IPv4ProtocolNumber && pa.Protocol != header.IPv6ProtocolNumber {
				continue
			}
			a := addr{link: l, prefix: netip.PrefixFrom(ip, pa.AddressWithPrefix.PrefixLen)}
			if a.v4() {
				v4 = append(v4, a)
			} else {
				v6 = append(v6, a)
			}
		}
		// Linux lists an interface's IPv6 addresses newest first, wider
		// scopes before narrower ones.
		mine := v6[first6:]
		slices.Reverse(mine)
		sort.SliceStable(mine, func(i, j int) bool { return mine[i].scope() < mine[j].scope() })
	}
	switch family {
	case unix.AF_INET:
		return v4
	case unix.AF_INET6:
		return v6
	}
	return append(v4, v6...)
}
