package nat

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/ustack/ustack/internal/fdpoll"
	"github.com/ustack/ustack/netstack"
)

const (
	gatewayNIC tcpip.NICID = 1
	// maxPendingDials bounds connections being dialled on the host at once;
	// SYNs beyond it are ignored (counted by netstack) and retransmitted by
	// the guest.
	maxPendingDials = 1024
)

// Gateway is the far end of a nat link: a netstack that accepts whatever the
// user-level stack sends to any address and relays it over host sockets.
type Gateway struct {
	cfg  Config
	ns   *stack.Stack
	echo *echoProxy
	logf func(string, ...any)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	open   map[io.Closer]struct{} // host and gateway sockets to close on Close
	// flowing counts the relays still passing the guest's data to the
	// host (their guest -> host direction has not ended); flowed is
	// closed while it is zero (see Settle).
	flowing int
	flowed  chan struct{}

	// pollr watches the host sockets of the TCP relays (see relay.go);
	// made with the first relay, closed by Close.
	pollMu  sync.Mutex
	pollr   *fdpoll.Poller
	pollErr error
}

// poller returns the gateway's poller, starting it the first time.
func (g *Gateway) poller() (*fdpoll.Poller, error) {
	g.pollMu.Lock()
	defer g.pollMu.Unlock()
	if g.pollr == nil && g.pollErr == nil {
		g.pollr, g.pollErr = fdpoll.New()
	}
	return g.pollr, g.pollErr
}

// New starts a gateway whose NIC sits on lower, an IP-frame link end (it is
// wrapped in Ethernet framing here). On error lower is left to the caller.
func New(cfg Config, lower stack.LinkEndpoint) (*Gateway, error) {
	if len(cfg.DNSUpstreams) == 0 {
		// A host without resolv.conf simply has no DNS forwarding.
		cfg.DNSUpstreams, _ = HostResolvers("/etc/resolv.conf")
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ns, err := netstack.NewPromiscuous(netstack.TCPOptions{})
	if err != nil {
		return nil, err
	}
	// No TIME-WAIT on the gateway's side: the guest chooses the ports, and a
	// new connection from a port whose previous connection the gateway closed
	// first would otherwise meet that connection in TIME-WAIT for 60 s.
	// netstack patch 0010 hands such a SYN to the forwarder when its sequence
	// number is past the old connection's, but one that is not (a guest whose
	// initial sequence numbers do not grow) would be dropped, and each of
	// thousands of closed connections would hold an endpoint for a minute.
	// TIME-WAIT guards against old duplicates in the network, and the link
	// to the guest is in memory: it has none. The host side's kernel socket
	// keeps its own TIME-WAIT. Even at 0, TIME-WAIT ends on a timer, after
	// the last ACK has gone out: patch 0010 also covers a SYN that comes in
	// between (TestNATSamePortAgain).
	noTimeWait := tcpip.TCPTimeWaitTimeoutOption(0)
	if err := ns.SetTransportProtocolOption(tcp.ProtocolNumber, &noTimeWait); err != nil {
		ns.Close()
		return nil, fmt.Errorf("gateway TIME-WAIT: %s", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{cfg: cfg, ns: ns, logf: logf, ctx: ctx, cancel: cancel, open: map[io.Closer]struct{}{}, flowed: make(chan struct{})}
	close(g.flowed) // nothing flows yet
	g.echo = newEchoProxy(g, lower)
	fail := func(err error) (*Gateway, error) {
		g.Close()
		return nil, err
	}
	if err := ns.CreateNICWithOptions(gatewayNIC, ethernet.New(g.echo), stack.NICOptions{Name: "gw0"}); err != nil {
		return fail(fmt.Errorf("gateway NIC: %s", err))
	}
	// Promiscuous: accept packets for every destination, since the gateway
	// stands in for the whole Internet. Spoofing: answer from those
	// addresses, and dial the guest from a published client's address.
	ns.SetPromiscuousMode(gatewayNIC, true)
	ns.SetSpoofing(gatewayNIC, true)
	for _, p := range cfg.Addrs {
		proto := ipv4.ProtocolNumber
		if p.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: netstack.Address(p.Addr()), PrefixLen: p.Bits()}}
		if err := ns.AddProtocolAddress(gatewayNIC, pa, stack.AddressProperties{}); err != nil {
			return fail(fmt.Errorf("gateway address %s: %s", p, err))
		}
	}
	ns.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: gatewayNIC},
		{Destination: header.IPv6EmptySubnet, NIC: gatewayNIC},
	})
	tcpFwd := tcp.NewForwarder(ns, 0, maxPendingDials, g.forwardTCP)
	ns.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	// Not udp.Forwarder's HandlePacket: it hands the handler a clone of
	// the packet that nothing ever releases (one leaked packet buffer per
	// flow). forwardUDP is done with the request when it returns, so the
	// demuxer's own reference is enough.
	ns.SetTransportProtocolHandler(udp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		return g.forwardUDP(udp.NewForwarderRequest(ns, id, pkt))
	})
	for _, p := range cfg.Publish {
		if err := g.publish(p); err != nil {
			return fail(&PublishError{Publish: p, Err: err})
		}
	}
	return g, nil
}

// Close stops the gateway: published ports are released, relayed
// connections closed and the gateway netstack shut down.
func (g *Gateway) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	open := g.open
	g.open = nil
	g.mu.Unlock()
	g.cancel()
	for c := range open {
		c.Close()
	}
	g.echo.close()
	g.ns.Close()
	g.wg.Wait()
	g.ns.Wait()
	g.pollMu.Lock()
	if g.pollr != nil {
		g.pollr.Close()
	}
	g.pollErr = fdpoll.ErrClosed
	g.pollMu.Unlock()
}

// track registers c to be closed by Close; it returns false (and closes c)
// if the gateway is already closed.
func (g *Gateway) track(c io.Closer) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		c.Close()
		return false
	}
	g.open[c] = struct{}{}
	return true
}

// trackRelay registers r to be aborted by Close, which waits until it has
// ended (untrackRelay); false if the gateway is closed.
func (g *Gateway) trackRelay(r *tcpRelay) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		r.host.Close()
		return false
	}
	g.open[r] = struct{}{}
	g.wg.Add(1)
	if g.flowing == 0 {
		g.flowed = make(chan struct{})
	}
	g.flowing++
	return true
}

// upEnded records that r's guest -> host direction has ended.
func (g *Gateway) upEnded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.flowing--
	if g.flowing == 0 {
		close(g.flowed)
	}
}

// Settle waits until every relayed connection has passed on to its host
// socket all that the guest sent, up to the guest's FIN, or ctx ends. A
// program that wrote and closed its socket just before exiting has its data
// delivered, as the kernel delivers what a closed socket still holds: after
// Settle, Close closes such host sockets gracefully instead of resetting
// them. A connection the guest keeps open is waited for until ctx ends.
func (g *Gateway) Settle(ctx context.Context) {
	g.mu.Lock()
	flowed := g.flowed
	g.mu.Unlock()
	select {
	case <-flowed:
	case <-ctx.Done():
	}
}

func (g *Gateway) untrackRelay(r *tcpRelay) {
	g.untrack(r)
	g.wg.Done()
}

func (g *Gateway) untrack(c io.Closer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.open, c)
}

// goAsync runs f on a goroutine that Close waits for.
func (g *Gateway) goAsync(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// hostTarget maps a destination the guest asked for to the host address to
// reach: the host alias becomes the host's loopback, the DNS address port 53
// becomes the first upstream resolver, anything else is itself. ok is false
// for a destination that must be refused.
func (g *Gateway) hostTarget(dst netip.AddrPort) (netip.AddrPort, bool) {
	a := dst.Addr()
	switch {
	case a == g.cfg.Gateway4 && a.IsValid():
		if g.cfg.NoHostLoopback {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port()), true
	case a == g.cfg.Gateway6 && a.IsValid():
		if g.cfg.NoHostLoopback {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.IPv6Loopback(), dst.Port()), true
	case a.IsValid() && (a == g.cfg.DNS4 || a == g.cfg.DNS6):
		if dst.Port() != 53 || len(g.cfg.DNSUpstreams) == 0 {
			return netip.AddrPort{}, false
		}
		return g.cfg.DNSUpstreams[0], true
	case a.IsLoopback() || a.IsUnspecified() || a.IsMulticast():
		// The guest's own loopback never leaves it; anything else of this
		// kind is not a real destination.
		return netip.AddrPort{}, false
	}
	return dst, true
}

// Stats returns the gateway netstack's counters.
func (g *Gateway) Stats() tcpip.Stats { return g.ns.Stats() }
