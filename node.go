package ustack

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/link"
	"github.com/ustack/ustack/nat"
	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/observe"
)

// A node is a stack with several interfaces, each on a link its caller
// made, with static routes and, for a router, forwarding between them:
// the hosts and routers of a lab (package lab) are nodes.

// NodeConfig describes a node for NewNode.
type NodeConfig struct {
	// Label is what the node's Attachment says it is, e.g. "lab:demo".
	Label string
	// Interfaces are the node's network interfaces, at least one; the
	// first is NIC 1 (eth0 on a stack of New).
	Interfaces []NodeInterface
	// Routes are static routes, in addition to one for each interface
	// address's subnet. The longest matching prefix wins.
	Routes []Route
	// Forwarding makes the node a router: packets that arrive for another
	// address are forwarded by the routes (IPv4 and IPv6).
	Forwarding bool
	// TCP are the stack-wide TCP settings.
	TCP TCPOptions
	// DNS are the name servers the Go API resolves names with; the default
	// is the DNS address of a NAT interface, if there is one.
	DNS []netip.Addr
	// Logf receives notable events (nil discards them).
	Logf func(format string, args ...any)
}

// NodeInterface is one network interface of a node: on a link (Link), or
// on a nat gateway to the host (NAT), as the stack of --net nat is.
type NodeInterface struct {
	// Name is the interface's name (eth0, eth1...), unique in the node.
	Name string
	// Link carries the interface's Ethernet frames whole, framing nothing
	// itself (as a link.PairEnd does); its MTU counts the Ethernet header
	// and its LinkAddress is the interface's MAC. NewNode adds the framing
	// and takes Link over: Close closes it. Nil when NAT is set.
	Link stack.LinkEndpoint
	// NAT, if set, puts the interface on a nat gateway of its own, which
	// carries connections to the host's sockets: Addrs default to
	// 10.0.2.15/24 and fd00::15/64, the gateway is the .2 address, and a
	// default route through it is added for each family that Routes has
	// none for.
	NAT *NAT
	// Addrs are the interface's addresses with prefix length.
	Addrs []netip.Prefix
}

// Route is a static route: packets to Dst go to Via (a neighbour on one of
// the node's subnets), or straight to their destination on Dev when Via is
// not set.
type Route struct {
	Dst netip.Prefix // 0.0.0.0/0 or ::/0 for a default route
	Via netip.Addr
	Dev string // an interface name; with Via set, the interface whose subnet holds Via by default
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Dst.Bits() == 0 {
		s = "default"
	}
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

// Node is the attachment of a stack built by NewNode; Label is what String
// shows ("node" if empty).
type Node struct{ Label string }

func (n Node) String() string {
	if n.Label == "" {
		return "node"
	}
	return n.Label
}

func (Node) attach(Config) (*Stack, error) {
	return nil, configErr("Net", "a node is built with NewNode, from its interfaces")
}

// validInterfaceName is what an interface may be called: it appears in
// captures (-i) and filter rules.
var validInterfaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,14}$`)

// ValidInterfaceName reports whether name may name a node's interface.
func ValidInterfaceName(name string) bool { return validInterfaceName.MatchString(name) }

// nodeNICID numbers a node's interfaces around the loopback NIC, so that the
// first is NIC 1 as on every other stack.
func nodeNICID(i int) tcpip.NICID {
	if i == 0 {
		return nicID
	}
	return tcpip.NICID(i + 2)
}

// NewNode builds a node from cfg. It takes every interface's Link over:
// Close closes them, and so does NewNode when it fails.
func NewNode(cfg NodeConfig) (*Stack, error) {
	if err := cfg.validate(); err != nil {
		for _, ifc := range cfg.Interfaces {
			if ifc.Link != nil {
				ifc.Link.Close()
			}
		}
		return nil, err
	}
	s := &Stack{net: Node{Label: cfg.Label}, logf: cfg.Logf, dns: cfg.DNS, mirrors: map[string]*observe.Mirror{}}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	owned := 0 // interfaces whose Link the stack's closers close
	fail := func(err error) (*Stack, error) {
		s.Close()
		for _, ifc := range cfg.Interfaces[owned:] {
			if ifc.Link != nil {
				ifc.Link.Close()
			}
		}
		return nil, err
	}
	var probe tcp.TCPProbeFunc
	if installObservers {
		s.probe = observe.NewHub()
		probe = s.probe.Probe
	}
	ns, err := netstack.NewWithProbe(cfg.TCP, probe)
	if err != nil {
		return fail(&ConfigError{Field: "TCP", Err: err})
	}
	s.ns = ns
	if s.probe != nil && !cfg.TCP.NoProbe {
		s.probe.Attach(ns)
	}
	s.closers = append(s.closers, func() error { ns.Close(); ns.Wait(); return nil })
	routes, err := addLoopback(ns)
	if err != nil {
		return fail(err)
	}
	var defaults []Route // through NAT gateways
	for i, ifc := range cfg.Interfaces {
		id := nodeNICID(i)
		lower := ifc.Link
		addrs := ifc.Addrs
		owned = i + 1
		if ifc.NAT != nil {
			var gw4, gw6, dns []netip.Addr
			lower, addrs, gw4, gw6, dns, err = s.attachNodeNAT(*ifc.NAT, addrs, cfg.Logf)
			if err != nil {
				return fail(&ConfigError{Field: fmt.Sprintf("Interfaces[%d].NAT", i), Err: err})
			}
			for _, g := range append(gw4, gw6...) {
				dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
				if g.Is6() {
					dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
				}
				if !hasDefaultRoute(cfg.Routes, g) {
					defaults = append(defaults, Route{Dst: dst, Via: g, Dev: ifc.Name})
				}
			}
			if len(cfg.DNS) == 0 {
				s.dns = append(s.dns, dns...)
			}
		} else {
			// First in the list, so closed last: after the stack, which
			// stops writing to it.
			l := lower
			s.closers = append([]func() error{func() error { l.Close(); return nil }}, s.closers...)
		}
		if installObservers {
			m := observe.NewMirror(lower)
			s.mirrors[ifc.Name] = m
			if i == 0 {
				s.mirror = m
			}
			lower = m
		}
		framed := ethernet.New(lower)
		if i == 0 {
			s.mtu = int(framed.MTU())
		}
		if err := ns.CreateNICWithOptions(id, framed, stack.NICOptions{Name: ifc.Name}); err != nil {
			return fail(fmt.Errorf("creating NIC %s: %s", ifc.Name, err))
		}
		for _, p := range addrs {
			pa := tcpip.ProtocolAddress{Protocol: protoOf(p.Addr()), AddressWithPrefix: tcpip.AddressWithPrefix{
				Address: netstack.Address(p.Addr()), PrefixLen: p.Bits()}}
			if err := ns.AddProtocolAddress(id, pa, stack.AddressProperties{}); err != nil {
				return fail(configErr(fmt.Sprintf("Interfaces[%d].Addrs", i), "adding %s: %s", p, err))
			}
			routes = append(routes, tcpip.Route{Destination: subnetOf(p), NIC: id})
			s.addrs = append(s.addrs, p)
		}
	}
	for _, r := range append(append([]Route(nil), cfg.Routes...), defaults...) {
		tr, err := cfg.route(r)
		if err != nil {
			return fail(err)
		}
		routes = append(routes, tr)
		if r.Dst.Bits() == 0 && r.Via.IsValid() {
			s.gateways = append(s.gateways, r.Via)
		}
	}
	ns.SetRouteTable(routes)
	if cfg.Forwarding {
		for _, p := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
			if err := ns.SetForwardingDefaultAndAllNICs(p, true); err != nil {
				return fail(fmt.Errorf("turning forwarding on: %s", err))
			}
		}
	}
	s.resolver = s.newResolver()
	return s, nil
}

func hasDefaultRoute(routes []Route, family netip.Addr) bool {
	for _, r := range routes {
		if r.Dst.Bits() == 0 && r.Dst.Addr().Is4() == family.Is4() {
			return true
		}
	}
	return false
}

// attachNodeNAT builds a nat gateway for a node's interface, as New does for
// --net nat, and returns the interface's end of the link, its addresses,
// the gateway addresses and DNS addresses.
func (s *Stack) attachNodeNAT(n NAT, addrs []netip.Prefix, logf func(string, ...any)) (stack.LinkEndpoint, []netip.Prefix, []netip.Addr, []netip.Addr, []netip.Addr, error) {
	if len(addrs) == 0 {
		addrs = []netip.Prefix{natAddr4, natAddr6}
	}
	gcfg := nat.Config{NoHostLoopback: n.NoHostLoopback, DNSUpstreams: n.DNSUpstreams, Publish: n.Publish, Logf: logf, MTU: pairMTU}
	var gw4, gw6, dns []netip.Addr
	for _, p := range addrs {
		gw, d := nthAddr(p, 2), nthAddr(p, 3)
		if p.Addr().Is4() {
			gcfg.Guest4, gcfg.Gateway4, gcfg.DNS4 = p.Addr(), gw, d
			gw4 = append(gw4, gw)
		} else {
			gcfg.Guest6, gcfg.Gateway6, gcfg.DNS6 = p.Addr(), gw, d
			gw6 = append(gw6, gw)
		}
		gcfg.Addrs = append(gcfg.Addrs, netip.PrefixFrom(gw, p.Bits()), netip.PrefixFrom(d, p.Bits()))
		dns = append(dns, d)
	}
	guestEnd, gwEnd := link.NewPair(uint32(pairMTU+header.EthernetMinimumSize), localMAC(0x56), tcpip.LinkAddress([]byte{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}))
	// As in New: the node and its gateway are one path.
	guestEnd.InlineDelivery()
	gw, err := nat.New(gcfg, gwEnd)
	if err != nil {
		guestEnd.Close()
		gwEnd.Close()
		return nil, nil, nil, nil, nil, err
	}
	// The gateway closes before the stack: it holds host sockets the user
	// sees. The interface's end closes after it, as any link does.
	s.closers = append([]func() error{func() error { guestEnd.Close(); return nil }}, s.closers...)
	s.closers = append(s.closers, func() error { gw.Close(); gwEnd.Close(); return nil })
	return guestEnd, addrs, gw4, gw6, dns, nil
}

func (cfg *NodeConfig) validate() error {
	if len(cfg.Interfaces) == 0 {
		return configErr("Interfaces", "a node needs at least one interface")
	}
	seen := map[string]bool{}
	for i, ifc := range cfg.Interfaces {
		field := fmt.Sprintf("Interfaces[%d]", i)
		if !ValidInterfaceName(ifc.Name) {
			return configErr(field+".Name", "%q is not an interface name (use a letter, then up to 14 letters, digits, '_' or '-', e.g. eth0)", ifc.Name)
		}
		if seen[ifc.Name] {
			return configErr(field+".Name", "%s twice (give each interface its own name)", ifc.Name)
		}
		seen[ifc.Name] = true
		if (ifc.Link == nil) == (ifc.NAT == nil) {
			return configErr(field, "%s: give either Link or NAT", ifc.Name)
		}
		for _, p := range ifc.Addrs {
			if !p.IsValid() || p.Addr().IsUnspecified() || p.Addr().IsMulticast() || p.Addr().Is4In6() {
				return configErr(field+".Addrs", "%s is not a usable host address (use e.g. 10.0.1.10/24)", p)
			}
		}
	}
	for i, r := range cfg.Routes {
		if _, err := cfg.route(r); err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				ce.Field = fmt.Sprintf("Routes[%d]", i)
			}
			return err
		}
	}
	if err := (&TCPOptions{CongestionControl: cfg.TCP.CongestionControl}).Validate(); err != nil {
		return configErr("TCP.CongestionControl", "unknown congestion control %q (available: reno, cubic)", cfg.TCP.CongestionControl)
	}
	if err := cfg.TCP.Validate(); err != nil {
		return &ConfigError{Field: "TCP", Err: err}
	}
	return nil
}

// route turns r into netstack's form: its interface is Dev, or the one
// whose subnet holds Via.
func (cfg *NodeConfig) route(r Route) (tcpip.Route, error) {
	if !r.Dst.IsValid() {
		return tcpip.Route{}, configErr("Routes", "a route needs a destination (a prefix, or default)")
	}
	if r.Via.IsValid() && r.Via.Is4() != r.Dst.Addr().Is4() {
		return tcpip.Route{}, configErr("Routes", "%s: the gateway is not of the destination's family", r)
	}
	if !r.Via.IsValid() && r.Dev == "" {
		return tcpip.Route{}, configErr("Routes", "%s: give a gateway (via) or an interface (dev)", r)
	}
	idx := -1
	for i, ifc := range cfg.Interfaces {
		if r.Dev != "" && ifc.Name == r.Dev {
			idx = i
		}
	}
	if r.Dev != "" && idx < 0 {
		return tcpip.Route{}, configErr("Routes", "%s: the node has no interface %s", r, r.Dev)
	}
	if idx < 0 {
		for i, ifc := range cfg.Interfaces {
			for _, p := range ifc.Addrs {
				if p.Masked().Contains(r.Via) {
					idx = i
				}
			}
		}
		if idx < 0 {
			return tcpip.Route{}, configErr("Routes", "%s: no interface's subnet holds %s (the gateway must be a neighbour; or add dev IFACE)", r, r.Via)
		}
	}
	tr := tcpip.Route{Destination: subnetOf(r.Dst), NIC: nodeNICID(idx)}
	if r.Via.IsValid() {
		tr.Gateway = netstack.Address(r.Via)
	}
	return tr, nil
}

// FrameMirrors returns the mirror of each of the stack's NICs by name, for
// live capture (-i NIC) and traces; a stack of New has only eth0.
func (s *Stack) FrameMirrors() map[string]*observe.Mirror {
	if len(s.mirrors) > 0 {
		return s.mirrors
	}
	if s.mirror == nil {
		return map[string]*observe.Mirror{}
	}
	return map[string]*observe.Mirror{"eth0": s.mirror}
}
