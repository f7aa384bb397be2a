package sockets

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	sizeofSockaddrIn  = 16
	sizeofSockaddrIn6 = 28
	// Linux accepts the RFC 2133 sockaddr_in6 without sin6_scope_id.
	minSockaddrIn6     = 24
	sizeofSockaddrStor = 128
)

// decodeSockaddr reads the address of a connect or bind on a socket of the
// given domain, with the kernel's checks and errors.
func decodeSockaddr(b []byte, domain int) (tcpip.FullAddress, unix.Errno) {
	if len(b) < 2 {
		return tcpip.FullAddress{}, unix.EINVAL
	}
	family := int(binary.NativeEndian.Uint16(b))
	switch domain {
	case unix.AF_INET:
		if len(b) < sizeofSockaddrIn {
			return tcpip.FullAddress{}, unix.EINVAL
		}
		if family != unix.AF_INET {
			return tcpip.FullAddress{}, unix.EAFNOSUPPORT
		}
		return tcpip.FullAddress{Port: binary.BigEndian.Uint16(b[2:]), Addr: tcpip.AddrFrom4Slice(b[4:8])}, 0
	case unix.AF_INET6:
		if len(b) < minSockaddrIn6 {
			return tcpip.FullAddress{}, unix.EINVAL
		}
		if family != unix.AF_INET6 {
			return tcpip.FullAddress{}, unix.EAFNOSUPPORT
		}
		return tcpip.FullAddress{Port: binary.BigEndian.Uint16(b[2:]), Addr: tcpip.AddrFrom16Slice(b[8:24])}, 0
	}
	return tcpip.FullAddress{}, unix.EAFNOSUPPORT
}

// decodeBindSockaddr is decodeSockaddr for bind: an AF_INET socket also
// takes AF_UNSPEC with INADDR_ANY as AF_INET, as Linux does for programs
// that zero the whole structure and fill in only the port.
func decodeBindSockaddr(b []byte, domain int) (tcpip.FullAddress, unix.Errno) {
	if domain == unix.AF_INET && len(b) >= sizeofSockaddrIn && binary.NativeEndian.Uint16(b) == unix.AF_UNSPEC &&
		binary.BigEndian.Uint32(b[4:8]) == 0 {
		return tcpip.FullAddress{Port: binary.BigEndian.Uint16(b[2:]), Addr: tcpip.AddrFrom4Slice(b[4:8])}, 0
	}
	return decodeSockaddr(b, domain)
}

// isUnspec reports whether a connect's address is AF_UNSPEC: a disconnect.
func isUnspec(b []byte) bool {
	return len(b) >= 2 && binary.NativeEndian.Uint16(b) == unix.AF_UNSPEC
}

// encodeSockaddr writes a in the form a socket of domain reports it: on an
// AF_INET6 socket an IPv4 address is v4-mapped, and no address at all is
// the unspecified one.
func encodeSockaddr(a tcpip.FullAddress, domain int) []byte {
	if domain == unix.AF_INET {
		b := make([]byte, sizeofSockaddrIn)
		binary.NativeEndian.PutUint16(b, unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], a.Port)
		if a.Addr.Len() == 4 {
			copy(b[4:8], a.Addr.AsSlice())
		}
		return b
	}
	b := make([]byte, sizeofSockaddrIn6)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], a.Port)
	switch a.Addr.Len() {
	case 4:
		b[18], b[19] = 0xff, 0xff
		copy(b[20:24], a.Addr.AsSlice())
	case 16:
		copy(b[8:24], a.Addr.AsSlice())
	}
	return b
}

// unspecified turns an all-zeros address into "no address", which is how
// netstack spells "any" for bind.
func unspecified(a tcpip.FullAddress) tcpip.FullAddress {
	if a.Addr.Unspecified() {
		a.Addr = tcpip.Address{}
	}
	return a
}

// bindable reports whether bind may name a: no address, a multicast or
// broadcast one, one in a loopback interface's subnet, or an address
// assigned to one of the stack's interfaces. netstack alone also accepts
// an address that was removed while a connection of the stack to itself
// still uses it (the route of such a connection holds it as a temporary
// address of the loopback interface), where Linux's bind fails with
// EADDRNOTAVAIL: the address is not the host's any more.
func bindable(ns *stack.Stack, a tcpip.Address) bool {
	ip, ok := netip.AddrFromSlice(a.AsSlice())
	if !ok || a.Len() == 0 {
		return true
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	for _, info := range ns.NICInfo() {
		for _, pa := range info.ProtocolAddresses {
			p, ok := netip.AddrFromSlice(pa.AddressWithPrefix.Address.AsSlice())
			if !ok {
				continue
			}
			prefix := netip.PrefixFrom(p, pa.AddressWithPrefix.PrefixLen)
			switch {
			case p == ip:
				return true
			case info.Flags.Loopback && prefix.Masked().Contains(ip):
				return true
			case ip.Is4() && p.Is4() && prefix.Bits() < 31 && isSubnetBroadcast(prefix, ip):
				return true
			}
		}
	}
	return false
}

// isSubnetBroadcast reports whether ip is the broadcast address of the
// IPv4 subnet p (its host bits all ones).
func isSubnetBroadcast(p netip.Prefix, ip netip.Addr) bool {
	network := binary.BigEndian.Uint32(p.Masked().Addr().AsSlice())
	host := uint32(1)<<(32-p.Bits()) - 1
	return binary.BigEndian.Uint32(ip.AsSlice()) == network|host
}
