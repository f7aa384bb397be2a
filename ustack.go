// Package ustack runs a TCP/IP stack (gVisor's netstack) inside the calling
// process and exposes it through the standard net interfaces: Dial, Listen
// and ListenPacket return net.Conn, net.Listener and net.PacketConn whose
// packets are handled by the user-level stack, not the kernel's.
//
// A Stack is attached to the world by an attachment: nat (the default)
// reaches the host's network through ordinary host sockets without any
// privilege, the way slirp does; NewPair joins two stacks in one process.
package ustack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/internal/hrtimer"
	"github.com/ustack/ustack/link"
	"github.com/ustack/ustack/mutate"
	"github.com/ustack/ustack/nat"
	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/observe"
	"github.com/ustack/ustack/shape"
)

// Each stack has its attachment's NIC and a loopback NIC.
const (
	nicID      tcpip.NICID = 1
	loopbackID tcpip.NICID = 2
)

// Stack is a user-level TCP/IP stack with one attachment.
type Stack struct {
	ns       *stack.Stack
	addrs    []netip.Prefix
	gateways []netip.Addr
	dns      []netip.Addr
	mtu      int
	netMu    sync.Mutex // guards addrs and mtu, which netconf.go changes while the stack runs
	net      Attachment
	resolver *net.Resolver
	pcap     *link.PcapWriter
	link     *link.PairEnd   // the stack's end of its in-memory link
	loss     *link.Loss      // Config.LinkLoss, if set
	probe    *observe.Hub    // netstack's TCP probe; nil if not installed
	mirror   *observe.Mirror // frames of the attachment's NIC, for live capture and traces
	shaper   *shape.Endpoint // the emulated link of the attachment's NIC (Config.Link)
	host     *hostShare      // what --net host holds on the host
	logf     func(string, ...any)
	mutator  *mutate.Endpoint // rules above the emulated link (Config.Mutate)
	tcpMu    sync.Mutex       // guards tcp
	tcp      TCPOptions       // the stack-wide TCP options in force

	// mirrors holds a node's (NewNode) mirror of each NIC by name.
	mirrors map[string]*observe.Mirror

	closeOnce sync.Once
	closeErr  error
	closers   []func() error // run in reverse order by Close

	// settle waits for what the attachment still holds of connections
	// ended on the stack (see Settle); nil when it holds nothing.
	settle func(context.Context)
}

// New builds a stack from cfg and attaches it.
func New(cfg Config) (*Stack, error) {
	if cfg.Net == nil {
		cfg.Net = NAT{}
	}
	if nilAttachment(cfg.Net) {
		return nil, configErr("Net", "a nil %T (use a value, e.g. ustack.Tap{Name: \"tap0\"})", cfg.Net)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg.Net.attach(cfg)
}

// NewPair builds two stacks joined by an in-memory link that holds a fast
// sender back instead of dropping. Unset addresses default to 10.0.9.1/24
// and fd09::1/64 for a, 10.0.9.2/24 and fd09::2/64 for b.
func NewPair(a, b Config) (*Stack, *Stack, error) {
	for _, c := range []*Config{&a, &b} {
		if err := c.validate(); err != nil {
			return nil, nil, err
		}
		if _, isPair := c.Net.(Pair); c.Net != nil && !isPair {
			return nil, nil, configErr("Net", "%s: NewPair attaches both stacks to their in-memory link (leave Net unset)", c.Net)
		}
		if c.MTU == 0 {
			c.MTU = pairMTU
		}
		if c.BusyPoll > 0 {
			return nil, nil, configErr("BusyPoll", "applies to the tap and host attachments; a pair's ends hand frames over in memory")
		}
	}
	if a.MTU != b.MTU {
		return nil, nil, configErr("MTU", "the two ends of a pair need the same MTU (%d and %d)", a.MTU, b.MTU)
	}
	if len(a.Addrs) == 0 {
		a.Addrs = []netip.Prefix{netip.MustParsePrefix("10.0.9.1/24"), netip.MustParsePrefix("fd09::1/64")}
	}
	if len(b.Addrs) == 0 {
		b.Addrs = []netip.Prefix{netip.MustParsePrefix("10.0.9.2/24"), netip.MustParsePrefix("fd09::2/64")}
	}
	endA, endB := link.NewPair(uint32(a.MTU+header.EthernetMinimumSize), localMAC(0x0a), localMAC(0x0b))
	sa, err := newStack(a, endA, ethernetFraming)
	if err != nil {
		endA.Close()
		endB.Close()
		return nil, nil, err
	}
	sb, err := newStack(b, endB, ethernetFraming)
	if err != nil {
		sa.Close()
		endB.Close()
		return nil, nil, err
	}
	return sa, sb, nil
}

// localMAC returns a locally administered unicast MAC ending in n.
func localMAC(n byte) tcpip.LinkAddress {
	return tcpip.LinkAddress([]byte{0x52, 0x54, 0x00, 0x12, 0x34, n})
}

func newNAT(cfg Config, n NAT) (*Stack, error) {
	if cfg.MTU == 0 {
		cfg.MTU = natMTU
	}
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []netip.Prefix{natAddr4, natAddr6}
	}
	gcfg := nat.Config{
		NoHostLoopback: n.NoHostLoopback,
		DNSUpstreams:   n.DNSUpstreams,
		Publish:        n.Publish,
		Logf:           cfg.Logf,
	}
	var gwAddrs []netip.Prefix
	for _, p := range cfg.Addrs {
		gw := nthAddr(p, 2)
		for _, g := range cfg.Gateways {
			if g.Is4() == p.Addr().Is4() {
				gw = g
			}
		}
		dns := nthAddr(p, 3)
		if p.Addr().Is4() {
			gcfg.Guest4, gcfg.Gateway4, gcfg.DNS4 = p.Addr(), gw, dns
		} else {
			gcfg.Guest6, gcfg.Gateway6, gcfg.DNS6 = p.Addr(), gw, dns
		}
		gwAddrs = append(gwAddrs, netip.PrefixFrom(gw, p.Bits()), netip.PrefixFrom(dns, p.Bits()))
		if !hasFamily(cfg.Gateways, p.Addr()) {
			cfg.Gateways = append(cfg.Gateways, gw)
		}
		if !hasFamily(cfg.DNS, p.Addr()) {
			cfg.DNS = append(cfg.DNS, dns)
		}
	}
	gcfg.Addrs = gwAddrs
	gcfg.MTU = cfg.MTU
	guestEnd, gwEnd := link.NewPair(uint32(cfg.MTU+header.EthernetMinimumSize), localMAC(0x56), tcpip.LinkAddress([]byte{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}))
	// The guest and its gateway are one path: a frame goes from one to
	// the other on the writer's goroutine when it can.
	guestEnd.InlineDelivery()
	s, err := newStack(cfg, guestEnd, ethernetFraming)
	if err != nil {
		guestEnd.Close()
		gwEnd.Close()
		return nil, err
	}
	gw, err := nat.New(gcfg, gwEnd)
	if err != nil {
		s.Close()
		gwEnd.Close()
		var pe *nat.PublishError
		if errors.As(err, &pe) {
			return nil, &ConfigError{Field: "NAT.Publish", Err: err}
		}
		return nil, err
	}
	// The gateway goes first: it holds host sockets the user sees.
	s.closers = append(s.closers, func() error { gw.Close(); gwEnd.Close(); return nil })
	s.settle = gw.Settle
	s.net = n
	return s, nil
}

func hasFamily(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x.Is4() == a.Is4() {
			return true
		}
	}
	return false
}

// ethernetFraming puts Ethernet headers on an in-memory link, whose ends
// carry whole frames without framing of their own.
func ethernetFraming(ep stack.LinkEndpoint) stack.LinkEndpoint { return ethernet.New(ep) }

// newStack creates the netstack and its NIC over lower. framing, if not
// nil, adds the link's Ethernet framing above the capture and the link
// emulator, so they see whole frames. On error the caller still owns lower.
func newStack(cfg Config, lower stack.LinkEndpoint, framing func(stack.LinkEndpoint) stack.LinkEndpoint) (*Stack, error) {
	s := &Stack{addrs: cfg.Addrs, gateways: cfg.Gateways, dns: cfg.DNS, mtu: cfg.MTU, net: Pair{}, logf: cfg.Logf}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	s.link, _ = lower.(*link.PairEnd)
	if cfg.LinkLoss.Fraction > 0 {
		s.loss = link.WithLoss(lower, cfg.LinkLoss.Fraction, cfg.LinkLoss.Seed)
		lower = s.loss
	}
	// The capture is opened first so that it is closed last, after the
	// stack has stopped sending frames into it.
	if cfg.Pcap != nil {
		pw, err := link.NewPcapWriter(cfg.Pcap)
		if err != nil {
			return nil, &ConfigError{Field: "Pcap", Err: err}
		}
		s.pcap = pw
		s.closers = append(s.closers, pw.Close)
		lower = link.WithCapture(lower, pw)
	}
	var probe tcp.TCPProbeFunc
	if installObservers {
		s.mirror = observe.NewMirror(lower)
		lower = s.mirror
		s.probe = observe.NewHub()
		probe = s.probe.Probe
	}
	ns, err := netstack.NewWithProbe(cfg.TCP, probe)
	if err != nil {
		s.Close()
		return nil, &ConfigError{Field: "TCP", Err: err}
	}
	s.ns = ns
	s.tcp = cfg.TCP
	if s.probe != nil && !cfg.TCP.NoProbe {
		s.probe.Attach(ns)
	}
	s.closers = append(s.closers, func() error { ns.Close(); ns.Wait(); return nil })
	// The link emulator goes above the capture and the mirror, so they
	// see frames as they leave it and as they arrive before it, and
	// under the framing, so it sees whole frames. It and the mutator run
	// on the real clock, as the stack does, but with precise timers
	// (package hrtimer): Go's fire up to a millisecond late, which a
	// delay line would add on every hop. ns.Wait closes it with the NIC.
	clock := hrtimer.NewClock()
	if s.shaper, err = shape.New(lower, clock, cfg.Link.Egress, cfg.Link.Ingress); err != nil {
		s.Close()
		return nil, &ConfigError{Field: "Link", Err: err}
	}
	lower = s.shaper
	// The packet mutator goes above the link emulator, where the stack's
	// own frames leave it: what a rule changes, adds or lets through then
	// crosses the emulated link like any frame (a receiver's divided or
	// duplicated ACKs take the link's delay and meet its loss), and what
	// arrives has crossed the link before the rules see it.
	linkLen := 0
	if framing != nil {
		linkLen = header.EthernetMinimumSize
	}
	if s.mutator, err = mutate.New(lower, clock, linkLen, cfg.Mutate); err != nil {
		s.Close()
		return nil, &ConfigError{Field: "Mutate", Err: err}
	}
	lower = s.mutator
	if framing != nil {
		lower = framing(lower)
	}
	lower = withSettableMTU(lower)
	if err := ns.CreateNICWithOptions(nicID, lower, stack.NICOptions{Name: "eth0"}); err != nil {
		s.Close()
		return nil, fmt.Errorf("creating NIC: %s", err)
	}
	routes, err := addLoopback(ns)
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, p := range cfg.Addrs {
		pa := tcpip.ProtocolAddress{
			Protocol:          protoOf(p.Addr()),
			AddressWithPrefix: netstack.Address(p.Addr()).WithPrefix(),
		}
		pa.AddressWithPrefix.PrefixLen = p.Bits()
		if err := ns.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			s.Close()
			return nil, configErr("Addrs", "adding %s: %s", p, err)
		}
		routes = append(routes, tcpip.Route{Destination: subnetOf(p), NIC: nicID})
	}
	for _, g := range cfg.Gateways {
		dst := header.IPv4EmptySubnet
		if g.Is6() {
			dst = header.IPv6EmptySubnet
		}
		routes = append(routes, tcpip.Route{Destination: dst, Gateway: netstack.Address(g), NIC: nicID})
	}
	ns.SetRouteTable(routes)
	s.resolver = s.newResolver()
	return s, nil
}

// addLoopback gives the stack its own 127.0.0.1/8 and ::1, so programs on
// one stack reach each other the way they do on a host; it returns the
// routes for them, which must come before any default route.
func addLoopback(ns *stack.Stack) ([]tcpip.Route, error) {
	if err := ns.CreateNICWithOptions(loopbackID, loopback.New(), stack.NICOptions{Name: "lo"}); err != nil {
		return nil, fmt.Errorf("creating loopback NIC: %s", err)
	}
	var routes []tcpip.Route
	for _, p := range []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")} {
		pa := tcpip.ProtocolAddress{Protocol: protoOf(p.Addr()), AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: netstack.Address(p.Addr()), PrefixLen: p.Bits()}}
		if err := ns.AddProtocolAddress(loopbackID, pa, stack.AddressProperties{}); err != nil {
			return nil, fmt.Errorf("loopback address %s: %s", p, err)
		}
		routes = append(routes, tcpip.Route{Destination: subnetOf(p), NIC: loopbackID})
	}
	return routes, nil
}

func protoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

func subnetOf(p netip.Prefix) tcpip.Subnet {
	m := p.Masked()
	mask := make([]byte, m.Addr().BitLen()/8)
	for i := 0; i < m.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	sn, err := tcpip.NewSubnet(netstack.Address(m.Addr()), tcpip.MaskFromBytes(mask))
	if err != nil {
		panic(err) // unreachable: a masked prefix is always a valid subnet
	}
	return sn
}

// Close shuts the stack down: connections are aborted, host sockets of the
// attachment are closed and the capture is flushed.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for i := len(s.closers) - 1; i >= 0; i-- {
			if err := s.closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Settle waits, until ctx ends, for the attachment to pass on what
// connections of the stack sent before they were closed: on nat, the
// gateway's relays to write all a guest connection sent, up to its FIN,
// into their host sockets, which Close then closes gracefully. Other
// attachments hold nothing: the stack's own endpoints are the connections.
// Call it before Close when the stack's last program has exited.
func (s *Stack) Settle(ctx context.Context) {
	if s.settle != nil {
		s.settle(ctx)
	}
}

// Addrs returns the stack's addresses.
func (s *Stack) Addrs() []netip.Prefix {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	return append([]netip.Prefix(nil), s.addrs...)
}

// DNS returns the name servers programs on the stack should use: for nat
// its DNS addresses (10.0.2.3, fd00::3), else Config.DNS.
func (s *Stack) DNS() []netip.Addr { return append([]netip.Addr(nil), s.dns...) }

// MTU returns the link MTU.
func (s *Stack) MTU() int {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	return s.mtu
}

// Attachment returns the stack's attachment as its Config gave it (NAT for
// none), or Pair for a stack of NewPair. Its String names it for display:
// "nat", "pair", "tap:NAME", "host:IFACE".
func (s *Stack) Attachment() Attachment { return s.net }

// LinkDown says why the stack's link is gone ("" while it is up): a host
// stack through ustack portd loses it when portd goes away.
func (s *Stack) LinkDown() string {
	if s.host != nil && s.host.portdGone.Load() {
		return "ustack portd went away"
	}
	return ""
}

// Netstack returns the underlying gVisor stack, for tools that inspect it.
func (s *Stack) Netstack() *stack.Stack { return s.ns }

// Dropped returns how many frames the stack's link dropped on send because
// the other end stayed full for too long or was closed.
func (s *Stack) Dropped() uint64 {
	if s.link == nil {
		return 0
	}
	return s.link.Dropped.Load()
}

// TCPProbe returns the hub of netstack's TCP probe: control-block samples
// of every connection for subscribers, and the latest one per endpoint.
// With nobody subscribed it costs a map lookup and a pointer store per
// received segment; netstack's own copy of the state for the probe costs
// more (BENCHMARKS.md), and tcp.probe=0 leaves both out.
func (s *Stack) TCPProbe() *observe.Hub { return s.probe }

// FrameMirror returns the mirror on the attachment's NIC (eth0), which copies
// frames to subscribers for live capture and packet traces.
func (s *Stack) FrameMirror() *observe.Mirror { return s.mirror }

// Lost returns how many frames Config.LinkLoss dropped.
func (s *Stack) Lost() uint64 {
	if s.loss == nil {
		return 0
	}
	return s.loss.Dropped.Load()
}

// installObservers is false only in the benchmark that measures what the
// TCP probe and the frame mirror cost when nobody subscribes.
var installObservers = true

// FlushCapture writes buffered pcap frames out; a no-op without --pcap.
func (s *Stack) FlushCapture() error {
	if s.pcap == nil {
		return nil
	}
	return s.pcap.Flush()
}
