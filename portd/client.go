package portd

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/link"
)

// OpenRequest is what a client asks for when it opens a session.
type OpenRequest struct {
	Iface string
	// Addrs are the interface's addresses to share; empty means all of
	// its IPv4 and global IPv6 addresses.
	Addrs []netip.Addr
	// Ephemeral is the size of the block of ports for outgoing
	// connections (TCP and UDP); 0 asks for none.
	Ephemeral int
	// Ports are the fixed ports to hold from the start.
	Ports []Port
}

// Session is a client's open session: its frame socket and its ports. It
// lasts until Close or until the process ends.
type Session struct {
	Info SessionInfo

	// The descriptors are plain ints, not *os.File or *net.UnixConn: those
	// close themselves when collected, and a program may well drop its
	// Stack (and with it the Session) while a listener of the stack lives
	// on. Closing the control socket ends the session.
	mu     sync.Mutex
	conn   int // -1 once closed
	frames int
	held   map[Port]bool
	fixed  map[Port]bool // held from Open: never released before Close

	// The watch of OnHangUp: wake is an eventfd that Close signals,
	// watching is closed once the watch no longer polls conn.
	wake     int
	watching chan struct{}
}

// Open connects to the portd at path and opens a session.
func Open(path string, r OpenRequest) (*Session, error) {
	conn, err := dial(path)
	if err != nil {
		return nil, err
	}
	rep, f, err := roundTrip(conn, &Request{Op: OpOpen, Iface: r.Iface, Addrs: r.Addrs, Ephemeral: r.Ephemeral, Ports: r.Ports})
	if err != nil {
		unix.Close(conn)
		return nil, err
	}
	if f < 0 || rep.Session == nil {
		unix.Close(conn)
		if f >= 0 {
			unix.Close(f)
		}
		return nil, fmt.Errorf("ustack portd at %s: the open reply carries no session", path)
	}
	s := &Session{Info: *rep.Session, conn: conn, frames: f, held: map[Port]bool{}}
	for _, p := range r.Ports {
		s.held[p] = true
	}
	for i := range s.Info.EphemeralCount {
		port := s.Info.EphemeralFirst + uint16(i)
		s.held[Port{hostports.TCP, port}] = true
		s.held[Port{hostports.UDP, port}] = true
	}
	s.fixed = maps.Clone(s.held)
	return s, nil
}

// Status lists what every client of the portd at path holds.
func Status(path string) ([]Holder, error) {
	conn, err := dial(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(conn)
	rep, _, err := roundTrip(conn, &Request{Op: OpStatus})
	if err != nil {
		return nil, err
	}
	return rep.Holders, nil
}

func dial(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, dialErr(path, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, dialErr(path, err)
	}
	return fd, nil
}

// roundTrip sends req and reads the reply and the descriptor it may carry
// (-1 if none).
func roundTrip(conn int, req *Request) (*Reply, int, error) {
	msg, err := json.Marshal(req)
	if err != nil {
		return nil, -1, err
	}
	if err := unix.Sendmsg(conn, msg, nil, nil, 0); err != nil {
		return nil, -1, fmt.Errorf("ustack portd: sending %s: %w", req.Op, err)
	}
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn int
	for {
		n, oobn, _, _, err = unix.Recvmsg(conn, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, -1, fmt.Errorf("ustack portd: reading the answer to %s: %w", req.Op, err)
	}
	if n == 0 {
		return nil, -1, fmt.Errorf("ustack portd closed the connection")
	}
	f := -1
	if oobn > 0 {
		cmsgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, cm := range cmsgs {
			fds, _ := unix.ParseUnixRights(&cm)
			for _, fd := range fds {
				if f < 0 {
					f = fd
				} else {
					unix.Close(fd)
				}
			}
		}
	}
	var rep Reply
	if err := json.Unmarshal(buf[:n], &rep); err != nil {
		if f >= 0 {
			unix.Close(f)
		}
		return nil, -1, fmt.Errorf("ustack portd: malformed answer: %w", err)
	}
	if rep.Error != "" {
		if f >= 0 {
			unix.Close(f)
		}
		return nil, -1, &RefusedError{Code: rep.Code, Msg: rep.Error}
	}
	return &rep, f, nil
}

// Reserve asks for one more port.
func (s *Session) Reserve(p Port) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[p] {
		return nil
	}
	if s.conn < 0 {
		return fmt.Errorf("ustack portd session closed")
	}
	if _, _, err := roundTrip(s.conn, &Request{Op: OpReserve, Ports: []Port{p}}); err != nil {
		return err
	}
	s.held[p] = true
	return nil
}

// Release gives back a port Reserve took, so that the host (or another
// client) may have it again. Ports held from Open (the fixed ones and the
// ephemeral block) stay held until Close; releasing one, or a port not
// held, does nothing.
func (s *Session) Release(p Port) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held[p] || s.fixed[p] {
		return nil
	}
	if s.conn < 0 {
		return fmt.Errorf("ustack portd session closed")
	}
	if _, _, err := roundTrip(s.conn, &Request{Op: OpRelease, Ports: []Port{p}}); err != nil {
		return err
	}
	delete(s.held, p)
	return nil
}

// Has reports whether the session holds p.
func (s *Session) Has(p Port) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[p]
}

// Ports returns the ports of proto the session holds, sorted.
func (s *Session) Ports(proto hostports.Proto) []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint16
	for p := range s.held {
		if p.Proto == proto {
			out = append(out, p.Port)
		}
	}
	slices.Sort(out)
	return out
}

// FrameFd is the session's frame socket: SOCK_SEQPACKET, one frame per
// message with a virtio-net header in front, as on a packet socket with
// PACKET_VNET_HDR. Frames written to it reach the interface if portd
// accepts them.
func (s *Session) FrameFd() int { return s.frames }

// Endpoint returns a link endpoint on the frame socket: the endpoint a
// root stack has on its packet socket (link.FrameSocketEndpoint), since
// the frames come as the packet socket gives them to portd. Every frame's
// checksums are checked as there, and bad frames counted and dropped.
// Close the session after the stack that uses the endpoint is gone.
func (s *Session) Endpoint(mtu int) (stack.LinkEndpoint, error) {
	mac, err := net.ParseMAC(s.Info.MAC)
	if err != nil {
		return nil, fmt.Errorf("ustack portd: session MAC %q: %w", s.Info.MAC, err)
	}
	ep, err := link.FrameSocketEndpoint(s.FrameFd(), "portd:"+s.Info.Iface, mtu, mac)
	if err != nil {
		return nil, fmt.Errorf("ustack portd: frame socket: %w", err)
	}
	return ep, nil
}

// OnHangUp has f called once, on a goroutine of its own, when portd ends
// the session from its side: it exited or was killed (its sockets close
// with it), or ended the session. The frame socket then carries nothing
// more. f is not called once Close has been. Call it at most once.
func (s *Session) OnHangUp(f func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn < 0 {
		return fmt.Errorf("ustack portd session closed")
	}
	if s.watching != nil {
		return fmt.Errorf("ustack portd: OnHangUp called twice")
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("ustack portd: watching the session: %w", err)
	}
	s.wake, s.watching = wake, make(chan struct{})
	go s.watch(s.conn, wake, f)
	return nil
}

// watch waits in poll(2), without reading, for the control connection to
// hang up or for Close.
func (s *Session) watch(conn, wake int, f func()) {
	fds := []unix.PollFd{{Fd: int32(conn), Events: unix.POLLRDHUP}, {Fd: int32(wake), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		hungUp := err == nil && fds[1].Revents == 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		if err == nil && !hungUp && fds[1].Revents == 0 {
			continue
		}
		// Before f: f may close the stack, and so the session, whose
		// Close waits for this.
		close(s.watching)
		if hungUp {
			f()
		}
		return
	}
}

// Close ends the session: portd releases its ports, table and sockets.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn < 0 {
		return nil
	}
	if s.watching != nil {
		// Stop the watch before its descriptor can be reused.
		unix.Write(s.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		<-s.watching
		unix.Close(s.wake)
	}
	err := unix.Close(s.conn)
	unix.Close(s.frames)
	s.conn, s.frames = -1, -1
	return err
}
