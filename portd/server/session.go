package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/hostshare"
	"github.com/ustack/ustack/portd"
)

// frameBufSize is each way's buffer of the frame socket: the kernel's
// default of ~208 KiB drops frames under load.
const frameBufSize = 4 << 20

// session is what one client holds: a share of the interface (reserved
// ports, a firewall table, a packet socket) and the frame socket to the
// client.
type session struct {
	id   uint64
	srv  *Server
	cred Cred
	user string

	iface string
	mac   net.HardwareAddr
	mtu   int
	addrs []netip.Addr

	// opening is held by open from start to end and taken by close, so
	// that a session portd closes while it is being set up is released
	// whole, never half (a table made after close ran would outlive it).
	opening sync.Mutex

	mu     sync.Mutex // serialises reserve and close
	share  *hostshare.Share
	pktF   *os.File // a dup of the share's packet socket, in Go's poller
	frame  *os.File // portd's end of the frame socket
	ver    *verifier
	closed bool

	// released is closed once endSession has released the session.
	released chan struct{}

	// charged is what the session holds of its user's limits and of
	// portd's descriptors (under srv.mu; see charge).
	charged cost

	sent, refused, received atomic.Uint64
	loggedRefusal           atomic.Bool
}

// holds reports whether the session holds port of proto on one of addrs.
func (s *session) holds(addrs []netip.Addr, p portd.Port) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.share == nil || !s.share.Has(hostshare.Port(p)) {
		return false
	}
	for _, a := range addrs {
		if slices.Contains(s.addrs, a) {
			return true
		}
	}
	return false
}

func (s *session) who() string {
	return fmt.Sprintf("%s (uid %d) pid %d", s.user, s.cred.UID, s.cred.PID)
}

// openHook, when set (by tests), runs as open begins its work.
var openHook atomic.Pointer[func()]

// open sets the session up for req. On error the caller closes it.
func (s *session) open(req *portd.Request) (*portd.SessionInfo, *os.File, error) {
	s.opening.Lock()
	defer s.opening.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: "portd is shutting down"}
	}
	if hook := openHook.Load(); hook != nil {
		(*hook)()
	}
	ifi, err := net.InterfaceByName(req.Iface)
	if err != nil {
		return nil, nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: fmt.Sprintf("host:%s: no such interface", req.Iface)}
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: fmt.Sprintf("host:%s: not an Ethernet interface", req.Iface)}
	}
	own, err := interfaceAddrs(ifi)
	if err != nil {
		return nil, nil, fmt.Errorf("host:%s: %w", ifi.Name, err)
	}
	addrs := own
	if len(req.Addrs) > 0 {
		addrs = nil
		for _, a := range req.Addrs {
			if !slices.Contains(own, a.Unmap()) {
				return nil, nil, &portd.RefusedError{Code: portd.CodeDenied, Msg: fmt.Sprintf("host:%s: %s is not an address of the interface (only its own addresses can be shared)", ifi.Name, a)}
			}
			addrs = append(addrs, a.Unmap())
		}
	}
	if len(addrs) == 0 {
		return nil, nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: fmt.Sprintf("host:%s: the interface has no IP address to share", ifi.Name)}
	}
	// Other sessions read these (holds, holder) under s.mu.
	s.mu.Lock()
	s.iface, s.mac, s.mtu = ifi.Name, ifi.HardwareAddr, ifi.MTU
	s.addrs = addrs
	s.mu.Unlock()
	pol := s.srv.policy.Load()
	if req.Ephemeral < 0 || req.Ephemeral > 16384 {
		return nil, nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: fmt.Sprintf("%d ephemeral ports is out of range (0 to 16384)", req.Ephemeral)}
	}
	if limit := pol.EphemeralLimit(s.cred, s.iface); req.Ephemeral > limit {
		return nil, nil, s.srv.refuse(s, portd.CodeDenied, "%d ephemeral ports on %s: the policy grants %s at most %d", req.Ephemeral, s.iface, s.who(), limit)
	}
	// Each port of the ephemeral block is held for TCP and UDP.
	c := portsCost(2*req.Ephemeral+len(req.Ports), len(s.addrs))
	c.ephemeral = req.Ephemeral
	if err := s.srv.charge(s, c, &s.charged, "a session on "+s.iface); err != nil {
		return nil, nil, err
	}
	cfg := hostshare.Config{Iface: s.iface, Addrs: s.addrs, Ephemeral: req.Ephemeral, Table: hostports.PortdTable(s.id)}
	for _, p := range req.Ports {
		if err := s.srv.allowed(s, p); err != nil {
			return nil, nil, err
		}
		cfg.Ports = append(cfg.Ports, hostshare.Port(p))
	}

	share, err := hostshare.Open(cfg)
	if err != nil {
		return nil, nil, s.shareErr(err)
	}
	s.mu.Lock()
	s.share = share
	s.mu.Unlock()
	// The frame check and the packet filter both follow the share's
	// grant.
	s.ver = newVerifier([6]byte(s.mac), share.Spec())
	dup, err := unix.FcntlInt(uintptr(share.Packet().Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("packet socket: %w", err)
	}
	unix.SetNonblock(dup, true)
	pktF := os.NewFile(uintptr(dup), "packet:"+s.iface)

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		pktF.Close()
		return nil, nil, fmt.Errorf("frame socket: %w", err)
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, frameBufSize)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, frameBufSize)
	}
	unix.SetNonblock(fds[0], true)
	frame := os.NewFile(uintptr(fds[0]), "frames")
	theirs := os.NewFile(uintptr(fds[1]), "frames")

	s.mu.Lock()
	s.pktF, s.frame = pktF, frame
	s.mu.Unlock()
	go s.pump(&pump{src: pktF, dst: frame, linkAddrs: true, check: s.forClient, passed: &s.received,
		reading: "reading " + s.iface, writing: "passing frames to the client"})
	go s.pump(&pump{src: frame, dst: pktF, check: s.fromClient, refuse: s.refuse, passed: &s.sent,
		reading: "reading the client's frames", writing: "sending on " + s.iface})
	first, n := share.Ephemeral()
	info := &portd.SessionInfo{ID: s.id, Iface: s.iface, MAC: s.mac.String(), MTU: s.mtu, Addrs: s.addrs,
		EphemeralFirst: first, EphemeralCount: n, Table: share.Table()}
	return info, theirs, nil
}

// shareErr words a failure of the share as the client's refusal where the
// client can do something about it: a port the host already uses, no free
// ephemeral block.
func (s *session) shareErr(err error) error {
	var se *hostshare.Error
	if !errors.As(err, &se) {
		return err
	}
	switch {
	case se.Step == hostshare.StepEphemeral:
		return &portd.RefusedError{Code: portd.CodeInUse, Msg: fmt.Sprintf("ephemeral ports: %v", se.Err)}
	case se.Step == hostshare.StepPort && hostports.IsInUse(err):
		return s.srv.refuse(s, portd.CodeInUse, "%s on %s: the host already uses it", portd.Port(se.Port), s.iface)
	}
	return err
}

// reserve adds p to an open session: held, dropped by the kernel's input,
// admitted by the packet filter and by the sending check. It is charged
// to the user first, and given back if it fails.
func (s *session) reserve(p portd.Port) error {
	if err := s.srv.allowed(s, p); err != nil {
		return err
	}
	if s.holdsPort(p) {
		return nil
	}
	// Charged before s.mu is taken: srv.mu comes before a session's mu.
	c := portsCost(1, len(s.addrs))
	if err := s.srv.charge(s, c, &s.charged, p.String()+" on "+s.iface); err != nil {
		return err
	}
	if err := s.reserveCharged(p); err != nil {
		s.srv.uncharge(s, c, &s.charged)
		return err
	}
	return nil
}

func (s *session) holdsPort(p portd.Port) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.share != nil && s.share.Has(hostshare.Port(p))
}

func (s *session) reserveCharged(p portd.Port) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.frame == nil {
		return &portd.RefusedError{Code: portd.CodeBadRequest, Msg: "no open session on this connection"}
	}
	if err := s.share.Reserve(hostshare.Port(p)); err != nil {
		return s.shareErr(err)
	}
	s.ver.setGrant(s.share.Spec())
	return nil
}

// release gives back p, which the session holds: the packet filter and the
// sending check stop admitting it before the host may have it again, and
// its charge goes back to the user. A port the session does not hold is
// refused, as is one of its ephemeral block (held until the session ends).
func (s *session) release(p portd.Port) error {
	if p.Proto != hostports.TCP && p.Proto != hostports.UDP || p.Port == 0 {
		return &portd.RefusedError{Code: portd.CodeBadRequest, Msg: fmt.Sprintf("%s: want a tcp or udp port from 1 to 65535", p)}
	}
	s.mu.Lock()
	if s.closed || s.frame == nil {
		s.mu.Unlock()
		return &portd.RefusedError{Code: portd.CodeBadRequest, Msg: "no open session on this connection"}
	}
	if !s.share.Has(hostshare.Port(p)) {
		s.mu.Unlock()
		return &portd.RefusedError{Code: portd.CodeBadRequest, Msg: fmt.Sprintf("%s on %s: the session does not hold it", p, s.iface)}
	}
	// The sending check first: from here on the client may not send from
	// the port, and then the share lets it go.
	s.ver.setGrant(s.share.SpecWithout(hostshare.Port(p)))
	err := s.share.Release(hostshare.Port(p))
	s.ver.setGrant(s.share.Spec())
	s.mu.Unlock()
	if err != nil {
		return &portd.RefusedError{Code: portd.CodeBadRequest, Msg: err.Error()}
	}
	// Charged before s.mu was taken by reserve; given back after it.
	s.srv.uncharge(s, portsCost(1, len(s.addrs)), &s.charged)
	return nil
}

// forClient passes the frames the packet filter admitted that are the
// client's: not those for other hosts (the interface in promiscuous
// mode), nor later fragments of datagrams that are not its own.
func (s *session) forClient(frame []byte, _ bool, pktType uint8) error {
	if pktType == unix.PACKET_OTHERHOST || !s.ver.received(frame) {
		return errNotOurs
	}
	return nil
}

// fromClient passes the client's frames that the verifier accepts.
func (s *session) fromClient(frame []byte, truncated bool, _ uint8) error {
	if truncated {
		return errShort
	}
	return s.ver.check(frame)
}

// logEnd logs why a pump ended the session, unless it ended because the
// session was closed or the client went away.
func (s *session) logEnd(what string, err error) {
	if errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return
	}
	s.srv.logf("portd: session %d (%s): %s: %v; ending the session", s.id, s.who(), what, err)
}

func (s *session) refuse(why error) {
	s.refused.Add(1)
	if s.loggedRefusal.CompareAndSwap(false, true) {
		s.srv.logf("portd: session %d (%s) on %s: refused a frame: %v (further refusals are only counted; see ustack portd status)", s.id, s.who(), s.iface, why)
	}
}

// close releases everything the session holds. The frame socket and the
// packet socket's dup go first so that the pumps end and no frame passes
// after the ports are given back; then the share, in its own order.
func (s *session) close() error {
	s.opening.Lock()
	defer s.opening.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, f := range []*os.File{s.frame, s.pktF} {
		if f != nil {
			f.Close()
		}
	}
	if s.share != nil {
		return s.share.Close()
	}
	return nil
}

func (s *session) holder() portd.Holder {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := portd.Holder{ID: s.id, UID: s.cred.UID, User: s.user, PID: s.cred.PID, Iface: s.iface, Addrs: s.addrs,
		Sent: s.sent.Load(), Refused: s.refused.Load(), Received: s.received.Load()}
	if s.share != nil {
		h.Table = s.share.Table()
		h.TCP, h.UDP = s.share.Ports(hostports.TCP), s.share.Ports(hostports.UDP)
	}
	return h
}

// interfaceAddrs returns the addresses of ifi a stack may share.
func interfaceAddrs(ifi *net.Interface) ([]netip.Addr, error) {
	prefixes, err := hostports.InterfacePrefixes(ifi)
	var out []netip.Addr
	for _, p := range prefixes {
		out = append(out, p.Addr())
	}
	return out, err
}
