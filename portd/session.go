package portd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/link"
)

// frameBufSize is each way's buffer of the frame socket and the packet
// socket: the kernel's default of ~208 KiB drops frames under load.
const frameBufSize = 4 << 20

// batchSize is how many frames one recvmmsg/sendmmsg moves.
const batchSize = 32

// session is what one client holds: reserved ports, a firewall table, a
// packet socket on the interface, and the frame socket to the client.
type session struct {
	id   uint64
	srv  *Server
	cred Cred
	user string

	iface      string
	ifindex    int
	mac        net.HardwareAddr
	mtu        int
	addrs      []netip.Addr
	ipv4       []netip.Addr
	ephemFirst uint16
	ephemCount int

	// opening is held by open from start to end and taken by close, so
	// that a session portd closes while it is being set up is released
	// whole, never half (a table made after close ran would outlive it).
	opening sync.Mutex

	mu     sync.Mutex // serialises reserve and close
	ports  *hostports.Reservation
	fw     *hostports.Firewall
	pkt    *link.PacketSocket
	pktF   *os.File // a dup of pkt's fd, in Go's poller
	frame  *os.File // portd's end of the frame socket
	ver    *verifier
	done   chan struct{}
	closed bool

	sent, refused, received atomic.Uint64
	loggedRefusal           atomic.Bool
}

// holds reports whether the session holds port of proto on one of addrs.
func (s *session) holds(addrs []netip.Addr, p Port) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ports == nil || !s.ports.Has(p.Proto, p.Port) {
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
func (s *session) open(req *request) (*SessionInfo, *os.File, error) {
	s.opening.Lock()
	defer s.opening.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, &RefusedError{CodeBadRequest, "portd is shutting down"}
	}
	if hook := openHook.Load(); hook != nil {
		(*hook)()
	}
	ifi, err := net.InterfaceByName(req.Iface)
	if err != nil {
		return nil, nil, &RefusedError{CodeBadRequest, fmt.Sprintf("host:%s: no such interface", req.Iface)}
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, nil, &RefusedError{CodeBadRequest, fmt.Sprintf("host:%s: not an Ethernet interface", req.Iface)}
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
				return nil, nil, &RefusedError{CodeDenied, fmt.Sprintf("host:%s: %s is not an address of the interface (only its own addresses can be shared)", ifi.Name, a)}
			}
			addrs = append(addrs, a.Unmap())
		}
	}
	if len(addrs) == 0 {
		return nil, nil, &RefusedError{CodeBadRequest, fmt.Sprintf("host:%s: the interface has no IP address to share", ifi.Name)}
	}
	// Other sessions read these (holds, holder) under s.mu.
	s.mu.Lock()
	s.iface, s.ifindex, s.mac, s.mtu = ifi.Name, ifi.Index, ifi.HardwareAddr, ifi.MTU
	s.addrs = addrs
	for _, a := range addrs {
		if a.Is4() {
			s.ipv4 = append(s.ipv4, a)
		}
	}
	s.mu.Unlock()
	pol := s.srv.policy.Load()
	if req.Ephemeral < 0 || req.Ephemeral > 16384 {
		return nil, nil, &RefusedError{CodeBadRequest, fmt.Sprintf("%d ephemeral ports is out of range (0 to 16384)", req.Ephemeral)}
	}
	if limit := pol.EphemeralLimit(s.cred, s.iface); req.Ephemeral > limit {
		return nil, nil, s.srv.refuse(s, CodeDenied, "%d ephemeral ports on %s: the policy grants %s at most %d", req.Ephemeral, s.iface, s.who(), limit)
	}
	for _, p := range req.Ports {
		if err := s.srv.allowed(s, p); err != nil {
			return nil, nil, err
		}
	}

	s.mu.Lock()
	s.ports = hostports.NewReservation(s.addrs)
	s.mu.Unlock()
	if req.Ephemeral > 0 {
		first, err := s.ports.ReserveBlock(req.Ephemeral)
		if err != nil {
			return nil, nil, &RefusedError{CodeInUse, fmt.Sprintf("ephemeral ports: %v", err)}
		}
		s.ephemFirst, s.ephemCount = first, req.Ephemeral
	}
	for _, p := range req.Ports {
		if err := s.reservePort(p); err != nil {
			return nil, nil, err
		}
	}
	table := fmt.Sprintf("%s%d_%d", hostports.PortdTablePrefix, os.Getpid(), s.id)
	fw, err := hostports.NewFirewallTable(table, s.iface, s.addrs)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.fw = fw
	s.mu.Unlock()
	s.ver = newVerifier([6]byte(s.mac), s.addrs)
	for _, proto := range []hostports.Proto{hostports.TCP, hostports.UDP} {
		ps := s.ports.Ports(proto)
		if err := s.fw.Add(proto, ps...); err != nil {
			return nil, nil, err
		}
		s.ver.addPorts(proto, ps...)
	}
	pkt, err := link.OpenPacket(s.iface, s.filterSpec())
	if err != nil {
		return nil, nil, err
	}
	dup, err := unix.Dup(pkt.Fd())
	if err != nil {
		pkt.Close()
		return nil, nil, fmt.Errorf("packet socket: %w", err)
	}
	unix.SetNonblock(dup, true)
	pktF := os.NewFile(uintptr(dup), "packet:"+s.iface)

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		pktF.Close()
		pkt.Close()
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
	s.pkt, s.pktF, s.frame = pkt, pktF, frame
	s.mu.Unlock()
	go s.receiveLoop()
	go s.sendLoop()
	info := &SessionInfo{ID: s.id, Iface: s.iface, MAC: s.mac.String(), MTU: s.mtu, Addrs: s.addrs,
		EphemeralFirst: s.ephemFirst, EphemeralCount: s.ephemCount, Table: table}
	return info, theirs, nil
}

func (s *session) filterSpec() link.FilterSpec {
	return link.FilterSpec{IPv4: s.ipv4, TCP: s.ports.Ports(hostports.TCP), UDP: s.ports.Ports(hostports.UDP)}
}

// reservePort holds p on the host, turning the kernel's EADDRINUSE into a
// refusal.
func (s *session) reservePort(p Port) error {
	if err := s.ports.Reserve(p.Proto, p.Port); err != nil {
		if hostports.IsInUse(err) {
			return s.srv.refuse(s, CodeInUse, "%s on %s: the host already uses it", p, s.iface)
		}
		return err
	}
	return nil
}

// reserve adds p to an open session: held, dropped by the kernel's input,
// admitted by the packet filter and by the sending check.
func (s *session) reserve(p Port) error {
	if err := s.srv.allowed(s, p); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.pkt == nil {
		return &RefusedError{CodeBadRequest, "no open session on this connection"}
	}
	if s.ports.Has(p.Proto, p.Port) {
		return nil
	}
	if err := s.reservePort(p); err != nil {
		return err
	}
	if err := s.fw.Add(p.Proto, p.Port); err != nil {
		return err
	}
	s.ver.addPorts(p.Proto, p.Port)
	return s.pkt.SetFilter(s.filterSpec())
}

// receiveLoop carries frames from the interface to the client. Frames for
// other hosts (the interface in promiscuous mode) are not the client's.
func (s *session) receiveLoop() {
	defer s.srv.endSession(s)
	in, err := s.pktF.SyscallConn()
	if err != nil {
		return
	}
	out, err := s.frame.SyscallConn()
	if err != nil {
		return
	}
	b := newBatch(batchSize, maxFrame, true)
	list := newSendList(batchSize)
	for {
		n, rerr, err := b.recvFrom(in)
		if err != nil {
			return
		}
		if rerr != nil {
			if rerr == unix.EINTR || rerr == unix.ENOBUFS || rerr == unix.ENETDOWN {
				continue
			}
			s.srv.logf("portd: session %d (%s): reading %s: %v", s.id, s.who(), s.iface, rerr)
			return
		}
		list.reset()
		for i := range n {
			if b.names[i].Pkttype == unix.PACKET_OTHERHOST {
				continue
			}
			list.add(b.bufs[i][:b.hdrs[i].Len])
		}
		s.received.Add(uint64(len(list.hdrs)))
		if err := writeAll(out, list, func(error) bool { return false }); err != nil {
			s.logEnd("passing frames to the client", err)
			return
		}
	}
}

// sendLoop carries the client's frames to the interface, after checking
// each one.
func (s *session) sendLoop() {
	defer s.srv.endSession(s)
	in, err := s.frame.SyscallConn()
	if err != nil {
		return
	}
	out, err := s.pktF.SyscallConn()
	if err != nil {
		return
	}
	b := newBatch(batchSize, maxFrame, false)
	list := newSendList(batchSize)
	for {
		n, rerr, err := b.recvFrom(in)
		if err != nil {
			return
		}
		if rerr != nil {
			if rerr == unix.EINTR {
				continue
			}
			s.logEnd("reading the client's frames", rerr)
			return
		}
		list.reset()
		for i := range n {
			m := &b.hdrs[i]
			if m.Len == 0 {
				return // the client closed its end
			}
			if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
				s.refuse(errShort)
				continue
			}
			frame := b.bufs[i][:m.Len]
			if err := s.ver.check(frame); err != nil {
				s.refuse(err)
				continue
			}
			list.add(frame)
		}
		// A frame the kernel rejects (a bad virtio-net header, say) is
		// counted as refused and the rest of the batch still goes.
		sentBefore := len(list.hdrs)
		var kernelRefused int
		if err := writeAll(out, list, func(err error) bool {
			kernelRefused++
			s.refuse(fmt.Errorf("the kernel refused the frame: %w", err))
			return true
		}); err != nil {
			s.logEnd("sending on "+s.iface, err)
			return
		}
		s.sent.Add(uint64(sentBefore - kernelRefused))
	}
}

// logEnd logs why a loop ended the session, unless it ended because the
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

// writeAll sends every message of list on c, waiting while the socket is
// full. A message the kernel refuses is skipped if skip says so; otherwise
// the error ends the loop.
func writeAll(c syscall.RawConn, list *sendList, skip func(error) bool) error {
	for off := 0; off < len(list.hdrs); {
		var n int
		var serr error
		if err := c.Write(func(fd uintptr) bool {
			n, serr = sendmmsg(int(fd), list.hdrs[off:])
			return serr != unix.EAGAIN
		}); err != nil {
			return err
		}
		switch {
		case serr == nil:
			off += n
		case serr == unix.EINTR:
		case serr == unix.ENOBUFS || serr == unix.ENETDOWN || serr == unix.ENXIO:
			off++ // the interface is busy or down: the frame is lost, as on a wire
		case skip(serr):
			off++
		default:
			return serr
		}
	}
	return nil
}

// close releases everything the session holds. The frame and packet
// sockets go first so that the loops end and no frame passes after the
// ports are given back.
func (s *session) close() error {
	s.opening.Lock()
	defer s.opening.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, f := range []*os.File{s.frame, s.pktF} {
		if f != nil {
			f.Close()
		}
	}
	if s.pkt != nil {
		errs = append(errs, s.pkt.Close())
	}
	if s.fw != nil {
		errs = append(errs, s.fw.Close())
	}
	if s.ports != nil {
		errs = append(errs, s.ports.Close())
	}
	return errors.Join(errs...)
}

func (s *session) holder() Holder {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Holder{ID: s.id, UID: s.cred.UID, User: s.user, PID: s.cred.PID, Iface: s.iface, Addrs: s.addrs,
		Sent: s.sent.Load(), Refused: s.refused.Load(), Received: s.received.Load()}
	if s.fw != nil {
		h.Table = s.fw.Table
	}
	if s.ports != nil {
		h.TCP, h.UDP = s.ports.Ports(hostports.TCP), s.ports.Ports(hostports.UDP)
		slices.Sort(h.TCP)
		slices.Sort(h.UDP)
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
