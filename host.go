package ustack

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/hostshare"
	"github.com/ustack/ustack/link"
	"github.com/ustack/ustack/portd"
)

const defaultEphemeralPorts = 64

// hostShare is what a stack on --net host holds on the host: the packet
// socket, the reserved ports and the firewall table that keeps the kernel
// off them, in one hostshare.Share.
type hostShare struct {
	iface string
	share *hostshare.Share

	// portd, when set, is the session through ustack portd that holds the
	// share for a stack without privileges; share is then unset.
	portd *portd.Session
	// portdGone is set once portd has ended the session (see portdGone).
	portdGone atomic.Bool

	// holdMu guards holds: the sockets bound to each port by programs
	// under ustack run (see HoldPort).
	holdMu sync.Mutex
	holds  map[hostshare.Port]*portHold
}

// portHold counts the sockets on one port. pinned says the port was held
// before the first of them (a --host-port, the ephemeral block, a Go API
// listener): it stays held when they are all gone.
type portHold struct {
	n      int
	pinned bool
}

const hostPrivilegeFix = "needs CAP_NET_RAW and CAP_NET_ADMIN: run as root, or as any user through ustack portd (--portd)"

// newHost attaches a stack to the host interface iface, sharing its IP
// addresses and MAC with the host kernel (Alpine's "faux-ethernet"). The
// stack sends and receives whole frames through a filtered packet socket;
// its ports are held on the host by reserving sockets and dropped in the
// kernel's input path by an nftables table of its own.
func newHost(cfg Config, att Host) (*Stack, error) {
	iface := att.Iface
	if iface == "" || strings.ContainsAny(iface, ",/ ") {
		return nil, configErr("Host.Iface", "%q is not an interface name (e.g. eth0)", iface)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, configErr("Net", "host:%s: no such interface (see: ip link)", iface)
	}
	if len(cfg.Addrs) == 0 {
		if cfg.Addrs, err = hostports.InterfacePrefixes(ifi); err != nil {
			return nil, &ConfigError{Field: "Net", Err: fmt.Errorf("host:%s: %w", iface, err)}
		}
		if len(cfg.Addrs) == 0 {
			return nil, configErr("Net", "host:%s: the interface has no IP address to share (add one, or give --ip)", iface)
		}
	}
	if cfg.MTU == 0 {
		cfg.MTU = ifi.MTU
	}
	if len(cfg.Gateways) == 0 {
		cfg.Gateways = defaultGateways(iface)
	}
	if cfg.TCP.TimeWaitReuse == "" {
		// The stack has a block of a few dozen ephemeral ports, not the
		// kernel's 28,000: with Linux's default (reuse over loopback only)
		// a loop of connects to one server runs out of ports after the
		// block's size, each held 60 s in TIME-WAIT, and fails with
		// EAGAIN. Taking a TIME-WAIT port back, as tcp_tw_reuse=1 does,
		// keeps such a loop going.
		cfg.TCP.TimeWaitReuse = "1"
	}
	n := att.EphemeralPorts
	if n == 0 {
		n = defaultEphemeralPorts
	}
	if n < 0 || n > 16384 {
		return nil, configErr("Host.EphemeralPorts", "%d is out of range (1 to 16384)", n)
	}

	if att.Portd != "" || os.Geteuid() != 0 {
		return newHostPortd(cfg, att, n)
	}

	req := hostshare.Config{Iface: iface, Ephemeral: n}
	for _, p := range cfg.Addrs {
		req.Addrs = append(req.Addrs, p.Addr())
	}
	// Each port is held by a TCP and a UDP socket per address: say so
	// before trying, not with EMFILE after a long search.
	var lim unix.Rlimit
	if need := uint64(2 * n * len(req.Addrs)); unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && need+256 > lim.Cur {
		most := (int(lim.Cur) - 256) / (2 * max(len(req.Addrs), 1))
		return nil, &ConfigError{Field: "Net", Err: fmt.Errorf("host:%s,ephemeral=%d needs %d descriptors (a TCP and a UDP socket per port and address) and the limit is %d: reserve at most %d", iface, n, need, lim.Cur, max(most, 0))}
	}
	for _, p := range att.Ports {
		req.Ports = append(req.Ports, hostshare.Port{Proto: protoOfHostPort(p), Port: p.Port})
	}
	share, err := hostshare.Open(req)
	if err != nil {
		return nil, hostShareErr(iface, err)
	}
	fail := func(err error) (*Stack, error) {
		share.Close()
		return nil, err
	}
	ep, err := share.Packet().Endpoint(cfg.MTU, cfg.BusyPoll)
	if err != nil {
		return fail(&ConfigError{Field: "Net", Err: fmt.Errorf("host:%w", err)})
	}
	s, err := newStack(cfg, ep, ethernetFraming)
	if err != nil {
		return fail(err)
	}
	link.CountDropsIn(ep, s.ns.Stats())
	// Released after the stack (whose NIC reads the socket) is gone.
	s.closers = append([]func() error{share.Close}, s.closers...)
	first, _ := share.Ephemeral()
	if terr := s.ns.SetPortRange(first, first+uint16(n-1)); terr != nil {
		s.Close()
		return nil, fmt.Errorf("setting the ephemeral port range: %s", terr)
	}
	s.host = &hostShare{iface: iface, share: share}
	s.net = att
	return s, nil
}

// newHostPortd attaches the stack through ustack portd, which holds the
// ports and the firewall table for it and carries its frames, checking
// each one it sends.
func newHostPortd(cfg Config, att Host, ephemeral int) (*Stack, error) {
	iface := att.Iface
	if cfg.BusyPoll > 0 {
		return nil, configErr("BusyPoll", "a host stack through portd reads portd's frame socket, not a device of its own (leave --busy-poll out, or run as root without --portd)")
	}
	path := att.Portd
	if path == "" {
		path = portd.DefaultSocket
	}
	req := portd.OpenRequest{Iface: iface, Ephemeral: ephemeral}
	for _, p := range cfg.Addrs {
		req.Addrs = append(req.Addrs, p.Addr())
	}
	for _, p := range att.Ports {
		req.Ports = append(req.Ports, portd.Port{Proto: protoOfHostPort(p), Port: p.Port})
	}
	sess, err := portd.Open(path, req)
	if err != nil {
		var re *portd.RefusedError
		// A refusal of one of the ports names it first; the rest are
		// about the session.
		if errors.As(err, &re) && re.Code != portd.CodeBadRequest && (strings.HasPrefix(re.Msg, "tcp port ") || strings.HasPrefix(re.Msg, "udp port ")) {
			return nil, &ConfigError{Field: "Host.Ports", Err: err}
		}
		return nil, &ConfigError{Field: "Net", Err: fmt.Errorf("host:%s: %w", iface, err)}
	}
	ep, err := sess.Endpoint(cfg.MTU)
	if err != nil {
		sess.Close()
		return nil, &ConfigError{Field: "Net", Err: fmt.Errorf("host:%s: %w", iface, err)}
	}
	s, err := newStack(cfg, ep, ethernetFraming)
	if err != nil {
		sess.Close()
		return nil, err
	}
	link.CountDropsIn(ep, s.ns.Stats())
	// Released after the stack (whose NIC reads the frame socket) is gone.
	s.closers = append([]func() error{sess.Close}, s.closers...)
	first, n := sess.Info.EphemeralFirst, sess.Info.EphemeralCount
	if terr := s.ns.SetPortRange(first, first+uint16(n-1)); terr != nil {
		s.Close()
		return nil, fmt.Errorf("setting the ephemeral port range: %s", terr)
	}
	s.host = &hostShare{iface: iface, portd: sess}
	s.net = att
	if err := sess.OnHangUp(s.portdGone); err != nil {
		s.Close()
		return nil, &ConfigError{Field: "Net", Err: fmt.Errorf("host:%s: %w", iface, err)}
	}
	return s, nil
}

// portdGone takes the stack off its link when ustack portd ends the
// session (portd stopped, or was killed): no frame will pass any more, so
// the stack's connections on the link are aborted (their programs see
// ECONNRESET) rather than left to time out, and the NIC is removed, so
// that new connections fail at once (ENETUNREACH) and nothing reads the
// dead frame socket. Connections on the stack's loopback go on.
func (s *Stack) portdGone() {
	s.host.portdGone.Store(true)
	s.logf("ustack portd went away: the stack's link is down")
	for _, ep := range s.ns.RegisteredEndpoints() {
		if la, ok := ep.(interface {
			GetLocalAddress() (tcpip.FullAddress, tcpip.Error)
		}); ok {
			if a, err := la.GetLocalAddress(); err == nil {
				if ip, _ := netip.AddrFromSlice(a.Addr.AsSlice()); ip.IsLoopback() {
					continue
				}
			}
		}
		ep.Abort()
	}
	s.ns.RemoveNIC(nicID)
}

func protoOfHostPort(p HostPort) hostports.Proto {
	if p.UDP {
		return hostports.UDP
	}
	return hostports.TCP
}

// hostShareErr words a failure to hold the share for the flag at fault.
func hostShareErr(iface string, err error) error {
	var se *hostshare.Error
	if !errors.As(err, &se) {
		return &ConfigError{Field: "Net", Err: fmt.Errorf("host:%s: %w", iface, err)}
	}
	switch {
	case se.Step == hostshare.StepPort && hostports.IsInUse(err):
		p := HostPort{Port: se.Port.Port, UDP: se.Port.Proto == hostports.UDP}
		return configErr("Host.Ports", "%s: the host already uses it (%w); choose another port or stop what holds it", p, err)
	case se.Step == hostshare.StepPort:
		return &ConfigError{Field: "Host.Ports", Err: err}
	case se.Step == hostshare.StepEphemeral:
		return &ConfigError{Field: "Net", Err: fmt.Errorf("host:%s: ephemeral ports: %w", iface, err)}
	case hostshare.NeedsPrivilege(err):
		return configErr("Net", "host:%s: %s (%w)", iface, hostPrivilegeFix, err)
	case se.Step == hostshare.StepFilter:
		// The packet socket's errors start with the interface's name.
		return &ConfigError{Field: "Net", Err: fmt.Errorf("host:%w", err)}
	}
	return &ConfigError{Field: "Net", Err: fmt.Errorf("host:%s: %w", iface, err)}
}

// reserve makes port of proto the stack's on the host: held, dropped by the
// kernel, admitted by the packet filter.
func (h *hostShare) reserve(proto hostports.Proto, port uint16) error {
	if h.portd != nil {
		return h.portd.Reserve(portd.Port{Proto: proto, Port: port})
	}
	return h.share.Reserve(hostshare.Port{Proto: proto, Port: port})
}

// ReserveHostPort makes port of network ("tcp" or "udp") usable for a
// listener of a stack on --net host: the host kernel gives the port to no
// one else and leaves its packets to the stack. The port stays reserved
// until the stack is closed. On other attachments it does nothing.
func (s *Stack) ReserveHostPort(network string, port uint16) error {
	if s.host == nil || port == 0 {
		return nil
	}
	proto := hostports.TCP
	switch network {
	case "tcp", "tcp4", "tcp6":
	case "udp", "udp4", "udp6":
		proto = hostports.UDP
	default:
		return nil
	}
	if err := s.host.reserve(proto, port); err != nil {
		return fmt.Errorf("host:%s: %w", s.host.iface, err)
	}
	// Held until the stack closes, even if sockets of programs held it
	// first and let go of it.
	s.host.holdMu.Lock()
	if hold := s.host.holds[hostshare.Port{Proto: proto, Port: port}]; hold != nil {
		hold.pinned = true
	}
	s.host.holdMu.Unlock()
	return nil
}

// HoldPort reserves port of proto (tcp.ProtocolNumber or
// udp.ProtocolNumber) with the host for one socket bound to it, as
// ReserveHostPort does, and returns the function that gives the socket's
// hold back: the port is released to the host when the last socket's
// hold is, unless the stack held it before (a --host-port, the ephemeral
// block, a Go API listener). The error unwraps to EADDRINUSE when the host
// or another stack holds the port and, through ustack portd, to EACCES
// when portd's policy does not grant it. Port 0 and stacks on other
// attachments hold nothing.
func (s *Stack) HoldPort(trans tcpip.TransportProtocolNumber, port uint16) (release func(), err error) {
	if s.host == nil || port == 0 || s.host.portdGone.Load() {
		return func() {}, nil
	}
	proto := hostports.TCP
	if trans == udp.ProtocolNumber {
		proto = hostports.UDP
	}
	p := hostshare.Port{Proto: proto, Port: port}
	h := s.host
	h.holdMu.Lock()
	defer h.holdMu.Unlock()
	hold := h.holds[p]
	if hold == nil {
		hold = &portHold{pinned: h.has(p)}
		if !hold.pinned {
			if err := h.reserve(proto, port); err != nil {
				return nil, fmt.Errorf("host:%s: %w", h.iface, err)
			}
		}
		if h.holds == nil {
			h.holds = map[hostshare.Port]*portHold{}
		}
		h.holds[p] = hold
	}
	hold.n++
	var once sync.Once
	return func() { once.Do(func() { s.unhold(p) }) }, nil
}

// unhold gives back one socket's hold on p, and p itself with the last.
func (s *Stack) unhold(p hostshare.Port) {
	h := s.host
	h.holdMu.Lock()
	defer h.holdMu.Unlock()
	hold := h.holds[p]
	if hold == nil {
		return
	}
	if hold.n--; hold.n > 0 {
		return
	}
	delete(h.holds, p)
	if hold.pinned {
		return
	}
	var err error
	if h.portd != nil {
		if !h.portdGone.Load() {
			err = h.portd.Release(portd.Port{Proto: p.Proto, Port: p.Port})
		}
	} else {
		err = h.share.Release(p)
	}
	if err != nil {
		s.logf("host:%s: giving %s back to the host: %v", h.iface, p, err)
	}
}

// has reports whether the share holds p now.
func (h *hostShare) has(p hostshare.Port) bool {
	if h.portd != nil {
		return h.portd.Has(portd.Port{Proto: p.Proto, Port: p.Port})
	}
	return h.share.Has(p)
}

// HostPorts returns the host ports a stack on --net host holds for network
// ("tcp" or "udp"), sorted; nil on other attachments.
func (s *Stack) HostPorts(network string) []uint16 {
	if s.host == nil {
		return nil
	}
	proto := hostports.TCP
	if network == "udp" {
		proto = hostports.UDP
	}
	if s.host.portd != nil {
		return s.host.portd.Ports(proto)
	}
	return s.host.share.Ports(proto)
}

// reserveForBind is called before the Go API binds addr: on --net host a
// fixed port must be the stack's on the host too.
func (s *Stack) reserveForBind(trans tcpip.TransportProtocolNumber, port uint16) error {
	if s.host == nil || port == 0 {
		return nil
	}
	network := "tcp"
	if trans == udp.ProtocolNumber {
		network = "udp"
	}
	return s.ReserveHostPort(network, port)
}

// defaultGateways reads the host's default routes through iface, one per
// family, from /proc/net/route and /proc/net/ipv6_route.
func defaultGateways(iface string) []netip.Addr {
	var gws []netip.Addr
	if f, err := os.Open("/proc/net/route"); err == nil {
		gws = append(gws, parseRoute4(f, iface)...)
		f.Close()
	}
	if f, err := os.Open("/proc/net/ipv6_route"); err == nil {
		gws = append(gws, parseRoute6(f, iface)...)
		f.Close()
	}
	return gws
}

// parseRoute4 finds "IFACE 00000000 GATEWAY ..." with mask 00000000; the
// kernel prints addresses as host-order (little-endian) hex.
func parseRoute4(f *os.File, iface string) []netip.Addr {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 || fl[0] != iface || fl[1] != "00000000" || fl[7] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(fl[2])
		if err != nil || len(b) != 4 {
			continue
		}
		gw := netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		if !gw.IsUnspecified() {
			return []netip.Addr{gw}
		}
	}
	return nil
}

// parseRoute6 finds "::/0 via NEXTHOP dev IFACE": dst, dst_len, src,
// src_len, next hop, metric, refcnt, use, flags, device.
func parseRoute6(f *os.File, iface string) []netip.Addr {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || fl[9] != iface || fl[1] != "00" || strings.Trim(fl[0], "0") != "" {
			continue
		}
		b, err := hex.DecodeString(fl[4])
		if err != nil || len(b) != 16 {
			continue
		}
		gw := netip.AddrFrom16([16]byte(b))
		if !gw.IsUnspecified() {
			return []netip.Addr{gw}
		}
	}
	return nil
}
