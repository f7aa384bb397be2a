package ustack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/syserr"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/netstack"
)

// listenBacklog matches Linux's default somaxconn.
const listenBacklog = 4096

// errnoOf turns a netstack error into the Linux errno it stands for, so that
// errors.Is(err, syscall.ECONNREFUSED) works as with the kernel's sockets.
func errnoOf(err tcpip.Error) error {
	if e := syserr.TranslateNetstackError(err); e != nil {
		return e.ToError()
	}
	return errors.New(err.String())
}

// Dial connects to address on the named network ("tcp", "tcp4", "tcp6",
// "udp", "udp4", "udp6") through the user-level stack.
func (s *Stack) Dial(network, address string) (net.Conn, error) {
	return s.DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context that bounds name resolution and the
// connection attempts. As with net.Dialer, the addresses a name resolves
// to are tried in turn, each with a share of the time left (see
// partialDeadline), and a deadline that passes is an error for which
// errors.Is(err, os.ErrDeadlineExceeded) holds and whose Timeout is true.
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	opErr := func(err error) error { return &net.OpError{Op: "dial", Net: network, Err: err} }
	fam, err := familyOf(network, "tcp", "udp")
	if err != nil {
		return nil, opErr(err)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, opErr(err)
	}
	port, err := s.resolver.LookupPort(ctx, network, portStr)
	if err != nil {
		return nil, opErr(err)
	}
	addrs, err := s.lookupHost(ctx, fam, host)
	if err != nil {
		return nil, opErr(err)
	}
	var firstErr error
	for i, a := range addrs {
		dst := netip.AddrPortFrom(a, uint16(port))
		if err := ctx.Err(); err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: netAddr(network, dst), Err: mapCtxErr(err)}
		}
		dialCtx := ctx
		if deadline, ok := ctx.Deadline(); ok {
			partial, err := partialDeadline(time.Now(), deadline, len(addrs)-i)
			if err != nil {
				if firstErr == nil {
					firstErr = &net.OpError{Op: "dial", Net: network, Addr: netAddr(network, dst), Err: err}
				}
				break
			}
			if partial.Before(deadline) {
				var cancel context.CancelFunc
				dialCtx, cancel = context.WithDeadline(ctx, partial)
				defer cancel()
			}
		}
		c, err := s.dialAddr(dialCtx, network, dst)
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// minDialShare is the least time an address gets when several are tried
// and the deadline allows it, as in net.Dialer.
const minDialShare = 2 * time.Second

// partialDeadline is the deadline for the next of addrsRemaining
// addresses: an equal share of the time left, but at least minDialShare
// (taken from the addresses at the end of the list) or all that is left
// when that is less. net.Dialer divides its time the same way, so one
// address that does not answer cannot use up the time of the others.
func partialDeadline(now, deadline time.Time, addrsRemaining int) (time.Time, error) {
	left := deadline.Sub(now)
	if left <= 0 {
		return time.Time{}, errTimeout
	}
	share := left / time.Duration(addrsRemaining)
	if share < minDialShare {
		share = min(minDialShare, left)
	}
	return now.Add(share), nil
}

// netAddr is dst as the net package names a peer of network.
func netAddr(network string, dst netip.AddrPort) net.Addr {
	if network[:3] == "udp" {
		return net.UDPAddrFromAddrPort(dst)
	}
	return net.TCPAddrFromAddrPort(dst)
}

// lookupHost resolves host to addresses of the wanted family ("ip", "ip4",
// "ip6"), using the stack's own DNS servers.
func (s *Stack) lookupHost(ctx context.Context, fam, host string) ([]netip.Addr, error) {
	if host == "" {
		host = "localhost"
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	addrs, err := s.resolver.LookupNetIP(ctx, fam, host)
	if err != nil {
		// Go's resolver names the server of the host's resolv.conf; the
		// query went to the stack's DNS server.
		var de *net.DNSError
		if errors.As(err, &de) && len(s.dns) > 0 && de.Server != "" {
			de.Server = net.JoinHostPort(s.dns[0].String(), "53")
		}
		if de != nil && de.IsTimeout && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The dial's deadline passed during the lookup: say so as
			// for the connection attempts.
			de.UnwrapErr = errTimeout
		}
		return nil, err
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

func (s *Stack) dialAddr(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	proto := protoOf(dst.Addr())
	if network[:3] == "udp" {
		var wq waiter.Queue
		ep, terr := s.ns.NewEndpoint(udp.ProtocolNumber, proto, &wq)
		if terr != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: net.UDPAddrFromAddrPort(dst), Err: errnoOf(terr)}
		}
		if terr := ep.Connect(netstack.FullAddress(dst)); terr != nil {
			ep.Close()
			return nil, &net.OpError{Op: "dial", Net: network, Addr: net.UDPAddrFromAddrPort(dst), Err: errnoOf(terr)}
		}
		return newPacketConn(network, &wq, ep, proto, false), nil
	}
	var wq waiter.Queue
	ep, terr := s.ns.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(dst), Err: errnoOf(terr)}
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(netstack.FullAddress(dst))
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(dst), Err: mapCtxErr(ctx.Err())}
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(dst), Err: errnoOf(terr)}
	}
	return &TCPConn{TCPConn: gonet.NewTCPConn(&wq, ep), ep: ep}, nil
}

// TCPConn is a connection Dial made over TCP: a net.Conn with the
// connection's own congestion control.
type TCPConn struct {
	*gonet.TCPConn
	ep tcpip.Endpoint
}

// SetCongestionControl selects the connection's congestion control by
// name, as TCP_CONGESTION does (package cc lists them).
func (c *TCPConn) SetCongestionControl(name string) error {
	opt := tcpip.CongestionControlOption(name)
	if terr := c.ep.SetSockOpt(&opt); terr != nil {
		return fmt.Errorf("congestion control %q: %w", name, errnoOf(terr))
	}
	return nil
}

// CongestionControl is the connection's congestion control and the
// algorithm's own state, as ss -i shows them.
func (c *TCPConn) CongestionControl() (name, info string) {
	return tcp.CongestionControlInfo(c.ep)
}

// mapCtxErr gives a deadline the net package's timeout error, so callers
// checking net.Error.Timeout see what they would with net.Dialer.
func mapCtxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errTimeout
	}
	return err
}

// timeoutError is a deadline that passed: "i/o timeout", a net.Error whose
// Timeout is true, and both os.ErrDeadlineExceeded (what a deadline on a
// net.Conn gives) and context.DeadlineExceeded (what net.Dialer's gives)
// to errors.Is.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Is(err error) bool {
	return err == os.ErrDeadlineExceeded || err == context.DeadlineExceeded
}

var errTimeout error = timeoutError{}

// familyOf checks network against the allowed bases and returns the address
// family to resolve names in.
func familyOf(network string, bases ...string) (string, error) {
	for _, b := range bases {
		switch network {
		case b:
			return "ip", nil
		case b + "4":
			return "ip4", nil
		case b + "6":
			return "ip6", nil
		}
	}
	return "", net.UnknownNetworkError(network)
}

// parseListenAddr splits a listen address; an empty or unspecified host
// with a family-less network means a dual-stack socket.
func (s *Stack) parseListenAddr(ctx context.Context, network, address string) (addr netip.AddrPort, dual bool, err error) {
	fam, err := familyOf(network, "tcp", "udp")
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		p, lerr := s.resolver.LookupPort(ctx, network, portStr)
		if lerr != nil {
			return netip.AddrPort{}, false, lerr
		}
		port = uint64(p)
	}
	var a netip.Addr
	switch {
	case host == "" || host == "0.0.0.0" && fam == "ip" || host == "::" && fam == "ip":
		switch fam {
		case "ip4":
			a = netip.IPv4Unspecified()
		case "ip6":
			a = netip.IPv6Unspecified()
		default:
			return netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(port)), true, nil
		}
	default:
		addrs, err := s.lookupHost(ctx, fam, host)
		if err != nil {
			return netip.AddrPort{}, false, err
		}
		a = addrs[0]
	}
	if fam == "ip4" && !a.Is4() || fam == "ip6" && !a.Is6() {
		return netip.AddrPort{}, false, fmt.Errorf("address %s does not match network %s", host, network)
	}
	return netip.AddrPortFrom(a, uint16(port)), false, nil
}

// bindEndpoint creates an endpoint of transport proto bound to addr; a
// dual-stack endpoint is an IPv6 one that also takes IPv4.
func (s *Stack) bindEndpoint(trans tcpip.TransportProtocolNumber, addr netip.AddrPort, dual bool, wq *waiter.Queue) (tcpip.Endpoint, error) {
	if err := s.reserveForBind(trans, addr.Port()); err != nil {
		return nil, err
	}
	netProto := protoOf(addr.Addr())
	ep, terr := s.ns.NewEndpoint(trans, netProto, wq)
	if terr != nil {
		return nil, errnoOf(terr)
	}
	if netProto == ipv6.ProtocolNumber {
		ep.SocketOptions().SetV6Only(!dual)
	}
	ep.SocketOptions().SetReuseAddress(true)
	bind := netstack.FullAddress(addr)
	if addr.Addr().IsUnspecified() {
		bind.Addr = tcpip.Address{}
	}
	if terr := ep.Bind(bind); terr != nil {
		ep.Close()
		return nil, errnoOf(terr)
	}
	return ep, nil
}

// Listen announces on the user-level stack. network is "tcp", "tcp4" or
// "tcp6"; with "tcp" and an empty or unspecified host the listener takes
// both IPv4 and IPv6, as Go's net.Listen does.
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	opErr := func(err error) error { return &net.OpError{Op: "listen", Net: network, Err: err} }
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, opErr(net.UnknownNetworkError(network))
	}
	addr, dual, err := s.parseListenAddr(context.Background(), network, address)
	if err != nil {
		return nil, opErr(err)
	}
	var wq waiter.Queue
	ep, err := s.bindEndpoint(tcp.ProtocolNumber, addr, dual, &wq)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: net.TCPAddrFromAddrPort(addr), Err: err}
	}
	if terr := ep.Listen(listenBacklog); terr != nil {
		ep.Close()
		return nil, &net.OpError{Op: "listen", Net: network, Addr: net.TCPAddrFromAddrPort(addr), Err: errnoOf(terr)}
	}
	return &listener{TCPListener: gonet.NewTCPListener(s.ns, &wq, ep), ep: ep, wq: &wq, unspecified: unspecifiedOf(addr.Addr())}, nil
}

// listener reports its address with IPv4-mapped addresses unmapped, like
// the kernel's, and Accept on a closed listener fails with net.ErrClosed as
// the net package's does (servers test for it to end their accept loop).
type listener struct {
	*gonet.TCPListener
	ep          tcpip.Endpoint
	wq          *waiter.Queue // Accept waits on it
	closed      atomic.Bool
	unspecified netip.Addr // 0.0.0.0 or ::, reported for a listener bound to no address
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil && l.closed.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
	return c, err
}

func (l *listener) Close() error {
	l.closed.Store(true)
	return l.TCPListener.Close()
}

func (l *listener) Addr() net.Addr {
	a, err := l.ep.GetLocalAddress()
	if err != nil {
		return l.TCPListener.Addr()
	}
	ap := netstack.NetipAddrPort(a.Addr, a.Port)
	if !ap.Addr().IsValid() {
		// Bound to all addresses: say so the way the kernel does.
		ap = netip.AddrPortFrom(l.unspecified, ap.Port())
	}
	return net.TCPAddrFromAddrPort(ap)
}

// ListenPacket opens a datagram socket on the user-level stack. network is
// "udp", "udp4" or "udp6" (dual-stack rules as for Listen), or "icmp" /
// "icmp6" for an ICMP echo socket that behaves like Linux's unprivileged
// ping sockets: write an echo request, read the reply; the identifier is
// the socket's and the stack fills it in.
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	opErr := func(err error) error { return &net.OpError{Op: "listen", Net: network, Err: err} }
	switch network {
	case "icmp", "icmp6":
		netProto, trans := ipv4.ProtocolNumber, icmp.ProtocolNumber4
		if network == "icmp6" {
			netProto, trans = ipv6.ProtocolNumber, icmp.ProtocolNumber6
		}
		var wq waiter.Queue
		ep, terr := s.ns.NewEndpoint(trans, netProto, &wq)
		if terr != nil {
			return nil, opErr(errnoOf(terr))
		}
		if terr := ep.Bind(tcpip.FullAddress{}); terr != nil {
			ep.Close()
			return nil, opErr(errnoOf(terr))
		}
		return newPacketConn(network, &wq, ep, netProto, true), nil
	}
	if _, err := familyOf(network, "udp"); err != nil {
		return nil, opErr(err)
	}
	addr, dual, err := s.parseListenAddr(context.Background(), network, address)
	if err != nil {
		return nil, opErr(err)
	}
	var wq waiter.Queue
	ep, err := s.bindEndpoint(udp.ProtocolNumber, addr, dual, &wq)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: net.UDPAddrFromAddrPort(addr), Err: err}
	}
	return newPacketConn(network, &wq, ep, protoOf(addr.Addr()), false), nil
}

// newResolver returns a resolver that sends its DNS queries through this
// stack to the stack's DNS servers (falling back to the host's
// /etc/resolv.conf servers, reached through the stack, when none is set).
func (s *Stack) newResolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if len(s.dns) > 0 {
				address = net.JoinHostPort(s.dns[0].String(), "53")
			}
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
			return s.dialAddr(ctx, network, ap)
		},
	}
}

// Resolver returns a resolver whose queries travel over this stack.
func (s *Stack) Resolver() *net.Resolver { return s.resolver }

func unspecifiedOf(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}
