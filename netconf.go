package ustack

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/netstack"
)

// Changes to a running stack's network, as `ip addr`, `ip route` and `ip
// link set` make them in a network namespace. Programs under `ustack run`
// make them over netlink (package netview), and they go through these
// methods so that the stack, its control API (Addrs, MTU) and what
// programs read agree. Errors wrap the errno Linux answers in the same
// case (unix.ENODEV for an unknown device, unix.EEXIST, ...), so that a
// program is refused as the kernel would refuse it.

// Limits of SetMTU: IPv4's minimum datagram size, and the largest frame
// netstack's links carry.
const (
	minLinkMTU = 68
	maxLinkMTU = 65535
)

// nicNamed finds the NIC called dev.
func (s *Stack) nicNamed(dev string) (tcpip.NICID, stack.NICInfo, error) {
	for id, info := range s.ns.NICInfo() {
		if info.Name == dev {
			return id, info, nil
		}
	}
	return 0, stack.NICInfo{}, fmt.Errorf("no interface %q: %w", dev, unix.ENODEV)
}

// AddAddress adds p (address and prefix length) to the interface dev, and,
// as Linux does, a route to p's subnet through dev if there is none.
func (s *Stack) AddAddress(dev string, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("address %v: %w", p, unix.EINVAL)
	}
	id, info, err := s.nicNamed(dev)
	if err != nil {
		return err
	}
	for _, pa := range info.ProtocolAddresses {
		if netstack.NetipAddr(pa.AddressWithPrefix.Address) == p.Addr() {
			return fmt.Errorf("%s already has %v: %w", dev, p.Addr(), unix.EEXIST)
		}
	}
	pa := tcpip.ProtocolAddress{Protocol: protoOf(p.Addr()), AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: netstack.Address(p.Addr()), PrefixLen: p.Bits()}}
	if terr := s.ns.AddProtocolAddress(id, pa, stack.AddressProperties{}); terr != nil {
		return fmt.Errorf("adding %v to %s: %s: %w", p, dev, terr, unix.EINVAL)
	}
	if p.Bits() < p.Addr().BitLen() {
		subnet := subnetOf(p)
		if !s.hasRoute(func(r tcpip.Route) bool { return r.Destination == subnet && r.NIC == id }) {
			s.ns.AddRoute(tcpip.Route{Destination: subnet, NIC: id})
		}
	}
	if !info.Flags.Loopback {
		s.netMu.Lock()
		s.addrs = append(s.addrs, p)
		s.netMu.Unlock()
	}
	return nil
}

// RemoveAddress removes p from the interface dev, and the route to p's
// subnet through dev when no other address of dev is in that subnet.
func (s *Stack) RemoveAddress(dev string, p netip.Prefix) error {
	id, info, err := s.nicNamed(dev)
	if err != nil {
		return err
	}
	found := false
	sameSubnet := false
	for _, pa := range info.ProtocolAddresses {
		a := netstack.NetipAddr(pa.AddressWithPrefix.Address)
		if a == p.Addr() && pa.AddressWithPrefix.PrefixLen == p.Bits() {
			found = true
		} else if pa.AddressWithPrefix.PrefixLen == p.Bits() && p.Masked().Contains(a) {
			sameSubnet = true
		}
	}
	if !found {
		return fmt.Errorf("%s has no address %v: %w", dev, p, unix.EADDRNOTAVAIL)
	}
	if terr := s.ns.RemoveAddress(id, netstack.Address(p.Addr())); terr != nil {
		return fmt.Errorf("removing %v from %s: %s: %w", p, dev, terr, unix.EADDRNOTAVAIL)
	}
	if !sameSubnet && p.Bits() < p.Addr().BitLen() {
		subnet := subnetOf(p)
		var none tcpip.Address
		s.ns.RemoveRoutes(func(r tcpip.Route) bool {
			return r.Destination == subnet && r.NIC == id && r.Gateway == none
		})
	}
	s.netMu.Lock()
	for i, a := range s.addrs {
		if a == p {
			s.addrs = append(s.addrs[:i:i], s.addrs[i+1:]...)
			break
		}
	}
	s.netMu.Unlock()
	return nil
}

func (s *Stack) hasRoute(match func(tcpip.Route) bool) bool {
	for _, r := range s.ns.GetRouteTable() {
		if match(r) {
			return true
		}
	}
	return false
}

// onLink finds the NIC with an address whose subnet holds a (dev, if not
// empty, must be that NIC).
func (s *Stack) onLink(a netip.Addr, dev string) (tcpip.NICID, bool) {
	for id, info := range s.ns.NICInfo() {
		if dev != "" && info.Name != dev {
			continue
		}
		for _, pa := range info.ProtocolAddresses {
			pfx := netip.PrefixFrom(netstack.NetipAddr(pa.AddressWithPrefix.Address), pa.AddressWithPrefix.PrefixLen)
			if pfx.Masked().Contains(a) {
				return id, true
			}
		}
	}
	return 0, false
}

// AddRoute adds a route to dst through the neighbour via on the interface
// dev. Either may be left out (the invalid netip.Addr, ""), not both: a
// route without a gateway reaches dst directly on dev, and without dev the
// interface is the one whose subnet holds via. As in Linux, a gateway must
// be on a subnet of the interface (ENETUNREACH), and there is at most one
// route to a destination (EEXIST).
func (s *Stack) AddRoute(dst netip.Prefix, via netip.Addr, dev string) error {
	if !dst.IsValid() || dst != dst.Masked() {
		return fmt.Errorf("route destination %v is not a prefix: %w", dst, unix.EINVAL)
	}
	if via.IsValid() && via.Is4() != dst.Addr().Is4() {
		return fmt.Errorf("gateway %v is not of %v's family: %w", via, dst, unix.EINVAL)
	}
	var id tcpip.NICID
	switch {
	case via.IsValid():
		var ok bool
		if dev != "" {
			if _, _, err := s.nicNamed(dev); err != nil {
				return err
			}
		}
		if id, ok = s.onLink(via, dev); !ok {
			return fmt.Errorf("gateway %v is on no subnet of the stack's interfaces: %w", via, unix.ENETUNREACH)
		}
	case dev != "":
		var err error
		if id, _, err = s.nicNamed(dev); err != nil {
			return err
		}
	default:
		return fmt.Errorf("route to %v names neither a gateway nor a device: %w", dst, unix.ENODEV)
	}
	subnet := subnetOf(dst)
	if s.hasRoute(func(r tcpip.Route) bool { return r.Destination == subnet }) {
		return fmt.Errorf("a route to %v exists: %w", dst, unix.EEXIST)
	}
	s.ns.AddRoute(tcpip.Route{Destination: subnet, Gateway: netstack.Address(via), NIC: id})
	return nil
}

// RemoveRoute removes the route to dst, which must go through via and dev
// where they are given (ESRCH when there is no such route).
func (s *Stack) RemoveRoute(dst netip.Prefix, via netip.Addr, dev string) error {
	if !dst.IsValid() {
		return fmt.Errorf("route destination %v: %w", dst, unix.EINVAL)
	}
	var id tcpip.NICID
	if dev != "" {
		var err error
		if id, _, err = s.nicNamed(dev); err != nil {
			return err
		}
	}
	subnet := subnetOf(dst.Masked())
	removed := false
	s.ns.RemoveRoutes(func(r tcpip.Route) bool {
		if removed || r.Destination != subnet || (id != 0 && r.NIC != id) ||
			(via.IsValid() && r.Gateway != netstack.Address(via)) {
			return false
		}
		removed = true
		return true
	})
	if !removed {
		return fmt.Errorf("no route to %v: %w", dst, unix.ESRCH)
	}
	return nil
}

// SetLinkUp brings the interface dev up or down. A down interface neither
// sends nor receives; its addresses and routes stay.
func (s *Stack) SetLinkUp(dev string, up bool) error {
	id, _, err := s.nicNamed(dev)
	if err != nil {
		return err
	}
	var terr tcpip.Error
	if up {
		terr = s.ns.EnableNIC(id)
	} else {
		terr = s.ns.DisableNIC(id)
	}
	if terr != nil {
		return fmt.Errorf("setting %s up=%v: %s: %w", dev, up, terr, unix.EINVAL)
	}
	return nil
}

// SetMTU sets the MTU of the interface dev (68 to 65535).
func (s *Stack) SetMTU(dev string, mtu int) error {
	if mtu < minLinkMTU || mtu > maxLinkMTU {
		return fmt.Errorf("MTU %d is outside %d-%d: %w", mtu, minLinkMTU, maxLinkMTU, unix.EINVAL)
	}
	id, info, err := s.nicNamed(dev)
	if err != nil {
		return err
	}
	if terr := s.ns.SetNICMTU(id, uint32(mtu)); terr != nil {
		return fmt.Errorf("setting %s's MTU: %s: %w", dev, terr, unix.EINVAL)
	}
	if got := s.ns.NICInfo()[id].MTU; got != uint32(mtu) {
		// The link carries no more than got: keep the MTU it had.
		s.ns.SetNICMTU(id, info.MTU)
		return fmt.Errorf("%s carries at most %d bytes: %w", dev, got, unix.EINVAL)
	}
	if id == nicID {
		s.netMu.Lock()
		s.mtu = mtu
		s.netMu.Unlock()
	}
	return nil
}

// mtuEndpoint lets SetMTU lower (or raise back) the MTU of a link whose
// own endpoint has a fixed one: it reports the smaller of the two.
type mtuEndpoint struct {
	nested.Endpoint
	lower stack.LinkEndpoint
	mtu   atomic.Uint32 // 0: the link's own
}

func withSettableMTU(lower stack.LinkEndpoint) stack.LinkEndpoint {
	e := &mtuEndpoint{lower: lower}
	e.Endpoint.Init(lower, e)
	return e
}

// MTU implements stack.LinkEndpoint.
func (e *mtuEndpoint) MTU() uint32 {
	if m := e.mtu.Load(); m != 0 {
		return min(m, e.lower.MTU())
	}
	return e.lower.MTU()
}

// SetMTU implements stack.LinkEndpoint.
func (e *mtuEndpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }
