package sockets

import (
	"net/netip"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ustack/ustack/netstack"
)

// Redirects send what a program addresses to one place to another, and
// show it the original address wherever the peer's address is reported
// (getpeername, recvfrom's source). ustack run uses them for the host's
// nameservers: a resolver at 127.0.0.53 (systemd-resolved) is the stack's
// own loopback under ustack, where nothing answers, so queries go to the
// stack's DNS address instead; glibc accepts the replies because they
// appear to come from the nameserver it asked.

// Redirect makes connections and datagrams to from go to to. Call it before
// any program starts.
func (m *Manager) Redirect(from, to netip.AddrPort) {
	if m.redirects == nil {
		m.redirects, m.reverse = map[netip.AddrPort]netip.AddrPort{}, map[netip.AddrPort]netip.AddrPort{}
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	m.redirects[from] = to
	m.reverse[to] = from
}

// fromAddrPort is ap as a socket of domain spells it: an IPv4 address is
// v4-mapped on an AF_INET6 socket.
func fromAddrPort(ap netip.AddrPort, domain int, nic tcpip.NICID) tcpip.FullAddress {
	ip := ap.Addr()
	if domain == unix.AF_INET6 && ip.Is4() {
		ip = netip.AddrFrom16(ip.As16())
	}
	return tcpip.FullAddress{NIC: nic, Addr: netstack.Address(ip), Port: ap.Port()}
}

// redirected is where a program's destination a really goes.
func (s *socket) redirected(a tcpip.FullAddress) tcpip.FullAddress {
	if s.m.redirects == nil {
		return a
	}
	if to, ok := s.m.redirects[netstack.NetipAddrPort(a.Addr, a.Port)]; ok {
		return fromAddrPort(to, s.domain, a.NIC)
	}
	return a
}

// original is the address the program used for a peer the stack knows as a.
func (s *socket) original(a tcpip.FullAddress) tcpip.FullAddress {
	if s.m.reverse == nil {
		return a
	}
	if from, ok := s.m.reverse[netstack.NetipAddrPort(a.Addr, a.Port)]; ok {
		return fromAddrPort(from, s.domain, a.NIC)
	}
	return a
}
