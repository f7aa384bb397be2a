package netstack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// The conversions between netstack's addresses and Go's net/netip ones, so
// that every package makes them the same way.

// Address returns a as netstack's address; the invalid netip.Addr gives the
// empty Address (any address, in a bind).
func Address(a netip.Addr) tcpip.Address {
	switch {
	case a.Is4():
		return tcpip.AddrFrom4(a.As4())
	case a.Is6():
		return tcpip.AddrFrom16(a.As16())
	}
	return tcpip.Address{}
}

// FullAddress returns ap as netstack's address and port, with no NIC.
func FullAddress(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: Address(ap.Addr()), Port: ap.Port()}
}

// NetipAddr returns a as a netip.Addr. An IPv4-mapped IPv6 address comes
// back as IPv4, the way Go's net package shows the IPv4 peers of dual-stack
// sockets; the empty Address gives the invalid netip.Addr.
func NetipAddr(a tcpip.Address) netip.Addr {
	switch a.Len() {
	case 4:
		return netip.AddrFrom4(a.As4())
	case 16:
		return netip.AddrFrom16(a.As16()).Unmap()
	}
	return netip.Addr{}
}

// NetipAddrPort is NetipAddr with a port.
func NetipAddrPort(a tcpip.Address, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(NetipAddr(a), port)
}
