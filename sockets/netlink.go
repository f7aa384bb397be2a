package sockets

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/netview"
)

// Netlink sockets of the NETLINK_ROUTE and NETLINK_SOCK_DIAG families are
// answered by the stack (package netview), as the kernel answers them for
// a network namespace: ip, ss, getifaddrs and Go's net.Interfaces then see
// the stack's interfaces, addresses, routes and sockets. Other families
// stay the kernel's.
//
// The program gets one end of an AF_UNIX SOCK_SEQPACKET pair, which keeps
// message boundaries and, unlike SOCK_DGRAM, ignores the sockaddr_nl of a
// sendto or sendmsg: the program's sends stay native. A goroutine reads
// each request datagram from our end and queues the answer's datagrams in
// it. Receives are answered here, because a netlink receive reports its
// sender (the kernel: nl_pid 0) and iproute2 and glibc check it; the
// datagram itself is taken from the program's end. The port id (nl_pid)
// is ours to give: bind, or the first send, binds as the kernel
// autobinds, to the process id first.

// sizeofSockaddrNl is struct sockaddr_nl.
const sizeofSockaddrNl = 12

// maxNetlinkRequest bounds a request datagram: more than any program
// sends (iproute2's send buffer is 32 KiB).
const maxNetlinkRequest = 256 << 10

// netlinks is the Manager's part for netlink sockets and interface ioctls.
type netlinks struct {
	view *netview.View // nil until ServeNetwork: netlink and ioctls stay the kernel's

	mu    sync.Mutex
	socks map[uint64]*nlSocket // by inode of the program's end
	ports map[uint32]*nlSocket // bound port ids
	rover int32                // the kernel's next autobind port id after the process id, counting down

	refused sync.Map // ioctl requests already logged as refused
}

// ServeNetwork makes the stack answer the programs' netlink route and
// sock_diag sockets and interface ioctls from v. Without it they are the
// kernel's (the host's).
func (m *Manager) ServeNetwork(v *netview.View) {
	m.nl.mu.Lock()
	m.nl.view = v
	m.nl.mu.Unlock()
}

func (m *Manager) network() *netview.View {
	m.nl.mu.Lock()
	defer m.nl.mu.Unlock()
	return m.nl.view
}

// nlSocket is one program netlink socket.
type nlSocket struct {
	m      *Manager
	ino    uint64
	proto  int
	sotype int
	conn   *net.UnixConn
	done   chan struct{}
	once   sync.Once

	mu       sync.Mutex
	ownerTid int
	port     uint32          // 0 until bound
	groups   uint32          // nl_groups of bind: multicast groups 1-32
	opts     map[int]int     // SOL_NETLINK flag options the program set
	members  map[uint32]bool // NETLINK_ADD_MEMBERSHIP groups
	dst      [2]uint32       // connect: port id and groups
}

// netlinkSocket answers socket(AF_NETLINK, type, protocol): false for the
// calls that are not for it (another domain).
func (m *Manager) netlinkSocket(c *intercept.Call) bool {
	if int(int32(c.Arg(0))) != unix.AF_NETLINK {
		return false
	}
	typ, proto := int(int32(c.Arg(1))), int(int32(c.Arg(2)))
	flags := typ &^ 0xf
	typ &= 0xf
	v := m.network()
	if v == nil || (proto != unix.NETLINK_ROUTE && proto != unix.NETLINK_SOCK_DIAG) {
		c.Continue() // the kernel's family, with the kernel's checks
		return true
	}
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		c.Fail(unix.EINVAL)
		return true
	}
	if typ != unix.SOCK_RAW && typ != unix.SOCK_DGRAM {
		c.Fail(unix.ESOCKTNOSUPPORT)
		return true
	}
	f, theirs, ino, err := newPair(unix.SOCK_SEQPACKET, flags&unix.SOCK_NONBLOCK != 0)
	if err != nil {
		answerErr(c, err)
		return true
	}
	// A net.Conn: unlike an *os.File, it reads a zero-length datagram
	// as one rather than as end of file.
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(theirs)
		answerErr(c, err)
		return true
	}
	conn := fc.(*net.UnixConn)
	s := &nlSocket{m: m, ino: ino, proto: proto, sotype: typ, conn: conn, done: make(chan struct{}),
		opts: map[int]int{}, members: map[uint32]bool{}, ownerTid: c.Tid()}
	m.nl.mu.Lock()
	if m.nl.socks == nil {
		m.nl.socks, m.nl.ports = map[uint64]*nlSocket{}, map[uint32]*nlSocket{}
	}
	m.nl.socks[ino] = s
	m.nl.mu.Unlock()
	_, err = c.ReturnFD(theirs, flags&unix.SOCK_CLOEXEC != 0)
	unix.Close(theirs)
	if err != nil {
		s.close()
		return true
	}
	go s.serve(v)
	return true
}

// netlinkByInode finds the netlink socket behind an inode.
func (m *Manager) netlinkByInode(ino uint64) *nlSocket {
	m.nl.mu.Lock()
	defer m.nl.mu.Unlock()
	return m.nl.socks[ino]
}

// closeNetlinks releases every netlink socket.
func (m *Manager) closeNetlinks() {
	m.nl.mu.Lock()
	socks := make([]*nlSocket, 0, len(m.nl.socks))
	for _, s := range m.nl.socks {
		socks = append(socks, s)
	}
	m.nl.mu.Unlock()
	for _, s := range socks {
		s.close()
	}
}

func (s *nlSocket) close() {
	s.once.Do(func() {
		close(s.done)
		s.conn.Close()
		m := s.m
		m.nl.mu.Lock()
		if m.nl.socks[s.ino] == s {
			delete(m.nl.socks, s.ino)
		}
		s.mu.Lock()
		if s.port != 0 && m.nl.ports[s.port] == s {
			delete(m.nl.ports, s.port)
		}
		s.mu.Unlock()
		m.nl.mu.Unlock()
	})
}

// bindPort binds the socket to port, or autobinds for 0: the owner's
// process id if free, else the kernel's negative ids from -4096 down. s.mu
// is held.
func (s *nlSocket) bindPort(port uint32) unix.Errno {
	m := s.m
	m.nl.mu.Lock()
	defer m.nl.mu.Unlock()
	if port == 0 {
		if pid, err := intercept.Tgid(s.ownerTid); err == nil && m.nl.ports[uint32(pid)] == nil {
			port = uint32(pid)
		} else {
			for {
				if m.nl.rover >= -4096 {
					m.nl.rover = -4097
				}
				port = uint32(m.nl.rover)
				m.nl.rover--
				if m.nl.ports[port] == nil {
					break
				}
			}
		}
	} else if m.nl.ports[port] != nil {
		return unix.EADDRINUSE
	}
	s.port = port
	m.nl.ports[port] = s
	return 0
}

// ensureBound autobinds an unbound socket, as a send does.
func (s *nlSocket) ensureBound() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.port == 0 {
		s.bindPort(0)
	}
}

// serve answers the requests the program sends, in order, until it closes
// its end.
func (s *nlSocket) serve(v *netview.View) {
	defer s.close()
	buf := make([]byte, maxNetlinkRequest)
	for {
		n, err := s.conn.Read(buf)
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		if n == 0 {
			if programGone(s.conn) {
				return
			}
			continue // an empty datagram
		}
		s.ensureBound()
		s.mu.Lock()
		sock := netview.Socket{Protocol: s.proto, Port: s.port,
			ExtAck: s.opts[unix.NETLINK_EXT_ACK] != 0, CapAck: s.opts[unix.NETLINK_CAP_ACK] != 0}
		s.mu.Unlock()
		for _, d := range v.Handle(sock, buf[:n]) {
			if _, err := s.conn.Write(d); err != nil {
				return
			}
		}
	}
}

// handle answers a call on the socket.
func (s *nlSocket) handle(c *intercept.Call) {
	switch c.Nr() {
	case unix.SYS_BIND:
		s.bind(c)
	case unix.SYS_CONNECT:
		s.connect(c)
	case unix.SYS_GETSOCKNAME:
		s.mu.Lock()
		if s.port == 0 && s.pendingRequest() {
			s.bindPort(0) // a native send the serving goroutine has not read yet
		}
		sa := sockaddrNl(s.port, s.groups)
		s.mu.Unlock()
		answerAddr(c, sa)
	case unix.SYS_GETPEERNAME:
		s.mu.Lock()
		sa := sockaddrNl(s.dst[0], s.dst[1])
		s.mu.Unlock()
		answerAddr(c, sa)
	case unix.SYS_SETSOCKOPT:
		s.setsockopt(c)
	case unix.SYS_GETSOCKOPT:
		s.getsockopt(c)
	case unix.SYS_SENDTO, unix.SYS_SENDMSG, unix.SYS_SENDMMSG:
		// The kernel sends on the pair, ignoring the sockaddr_nl; the
		// socket is bound first, as the kernel binds it on a send.
		s.ensureBound()
		c.Continue()
	case unix.SYS_RECVMSG:
		s.recvmsg(c)
	case unix.SYS_RECVFROM:
		s.recvfrom(c)
	case unix.SYS_RECVMMSG:
		s.recvmmsg(c)
	case unix.SYS_LISTEN, unix.SYS_ACCEPT, unix.SYS_ACCEPT4:
		c.Fail(unix.EOPNOTSUPP)
	default:
		c.Continue()
	}
}

// pendingRequest reports whether the program has sent something our
// goroutine has not read yet.
func (s *nlSocket) pendingRequest() bool {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return false
	}
	pending := false
	rc.Control(func(fd uintptr) {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		pending = err == nil && n > 0
	})
	return pending
}

func sockaddrNl(port, groups uint32) []byte {
	b := make([]byte, sizeofSockaddrNl)
	binary.NativeEndian.PutUint16(b, unix.AF_NETLINK)
	binary.NativeEndian.PutUint32(b[4:], port)
	binary.NativeEndian.PutUint32(b[8:], groups)
	return b
}

func answerAddr(c *intercept.Call, sa []byte) {
	if err := writeAddrResult(c, c.Arg(1), c.Arg(2), sa); err != nil {
		answerErr(c, err)
		return
	}
	c.Return(0)
}

// readSockaddrNl reads the sockaddr_nl of a bind or connect: EINVAL when
// it is short or of another family (AF_UNSPEC allowed for connect).
func readSockaddrNl(c *intercept.Call, unspec bool) (family int, port, groups uint32, err error) {
	b, err := readAddrArg(c, c.Arg(1), int(int32(c.Arg(2))))
	if err != nil {
		return 0, 0, 0, err
	}
	if len(b) >= 2 && unspec && binary.NativeEndian.Uint16(b) == unix.AF_UNSPEC {
		return unix.AF_UNSPEC, 0, 0, nil
	}
	if len(b) < sizeofSockaddrNl || binary.NativeEndian.Uint16(b) != unix.AF_NETLINK {
		return 0, 0, 0, unix.EINVAL
	}
	return unix.AF_NETLINK, binary.NativeEndian.Uint32(b[4:]), binary.NativeEndian.Uint32(b[8:]), nil
}

// bind answers bind(fd, sockaddr_nl): the port id (0: the kernel picks)
// and the multicast groups to join. Groups are kept; the stack sends no
// notifications to them.
func (s *nlSocket) bind(c *intercept.Call) {
	_, port, groups, err := readSockaddrNl(c, false)
	if err != nil {
		answerErr(c, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.port != 0 && port != 0 && port != s.port {
		c.Fail(unix.EINVAL)
		return
	}
	if s.port == 0 {
		if en := s.bindPort(port); en != 0 {
			c.Fail(en)
			return
		}
	}
	s.groups = groups
	c.Return(0)
}

// connect answers connect(fd, sockaddr_nl): the default destination;
// AF_UNSPEC forgets it.
func (s *nlSocket) connect(c *intercept.Call) {
	family, port, groups, err := readSockaddrNl(c, true)
	if err != nil {
		answerErr(c, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if family == unix.AF_UNSPEC {
		s.dst = [2]uint32{}
		c.Return(0)
		return
	}
	if s.port == 0 {
		s.bindPort(0)
	}
	s.dst = [2]uint32{port, groups}
	c.Return(0)
}

// netlinkFlagOptions are the SOL_NETLINK options that are flags.
var netlinkFlagOptions = map[int]bool{
	unix.NETLINK_PKTINFO: true, unix.NETLINK_BROADCAST_ERROR: true, unix.NETLINK_NO_ENOBUFS: true,
	unix.NETLINK_LISTEN_ALL_NSID: true, unix.NETLINK_CAP_ACK: true, unix.NETLINK_EXT_ACK: true,
	unix.NETLINK_GET_STRICT_CHK: true,
}

// setsockopt answers setsockopt: SOL_NETLINK's options here, SOL_SOCKET's
// (buffer sizes, timeouts, filters) on the program's end by the kernel.
func (s *nlSocket) setsockopt(c *intercept.Call) {
	level, name := int(int32(c.Arg(1))), int(int32(c.Arg(2)))
	switch level {
	case unix.SOL_SOCKET:
		c.Continue()
		return
	case unix.SOL_NETLINK:
	default:
		c.Fail(unix.ENOPROTOOPT)
		return
	}
	v, err := readInt(c, c.Arg(3), int(int32(c.Arg(4))))
	if err != nil {
		answerErr(c, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case name == unix.NETLINK_ADD_MEMBERSHIP || name == unix.NETLINK_DROP_MEMBERSHIP:
		if v <= 0 {
			c.Fail(unix.EINVAL)
			return
		}
		if name == unix.NETLINK_ADD_MEMBERSHIP {
			s.members[uint32(v)] = true
		} else {
			delete(s.members, uint32(v))
		}
	case netlinkFlagOptions[name]:
		s.opts[name] = b2i(v != 0)
	default:
		c.Fail(unix.ENOPROTOOPT)
		return
	}
	c.Return(0)
}

// getsockopt answers getsockopt: SOL_NETLINK's options, and what
// SOL_SOCKET says of the socket's kind (the pair would say AF_UNIX).
func (s *nlSocket) getsockopt(c *intercept.Call) {
	level, name := int(int32(c.Arg(1))), int(int32(c.Arg(2)))
	var out []byte
	s.mu.Lock()
	switch {
	case level == unix.SOL_SOCKET && name == unix.SO_DOMAIN:
		out = binary.NativeEndian.AppendUint32(nil, unix.AF_NETLINK)
	case level == unix.SOL_SOCKET && name == unix.SO_TYPE:
		out = binary.NativeEndian.AppendUint32(nil, uint32(s.sotype))
	case level == unix.SOL_SOCKET && name == unix.SO_PROTOCOL:
		out = binary.NativeEndian.AppendUint32(nil, uint32(s.proto))
	case level == unix.SOL_SOCKET:
		s.mu.Unlock()
		c.Continue()
		return
	case level == unix.SOL_NETLINK && name == unix.NETLINK_LIST_MEMBERSHIPS:
		var words [2]uint32
		for g := range s.members {
			if g <= 64 {
				words[(g-1)/32] |= 1 << ((g - 1) % 32)
			}
		}
		words[0] |= s.groups
		out = append(binary.NativeEndian.AppendUint32(nil, words[0]), binary.NativeEndian.AppendUint32(nil, words[1])...)
	case level == unix.SOL_NETLINK && netlinkFlagOptions[name]:
		out = binary.NativeEndian.AppendUint32(nil, uint32(s.opts[name]))
	case level == unix.SOL_NETLINK:
		s.mu.Unlock()
		c.Fail(unix.ENOPROTOOPT)
		return
	default:
		s.mu.Unlock()
		c.Fail(unix.EOPNOTSUPP)
		return
	}
	s.mu.Unlock()
	lenPtr := c.Arg(4)
	var lb [4]byte
	if err := c.ReadMem(lenPtr, lb[:]); err != nil {
		answerErr(c, err)
		return
	}
	n := int(int32(binary.NativeEndian.Uint32(lb[:])))
	if n < 0 {
		c.Fail(unix.EINVAL)
		return
	}
	if level == unix.SOL_NETLINK && name != unix.NETLINK_LIST_MEMBERSHIPS && n < 4 {
		c.Fail(unix.EINVAL)
		return
	}
	if n < len(out) {
		out = out[:n]
	}
	if err := c.WriteMem(c.Arg(3), out); err != nil {
		answerErr(c, err)
		return
	}
	binary.NativeEndian.PutUint32(lb[:], uint32(len(out)))
	if err := c.WriteMem(lenPtr, lb[:]); err != nil {
		answerErr(c, err)
		return
	}
	c.Return(0)
}

// nlReceived is one datagram taken from the program's end.
type nlReceived struct {
	data []byte // as much as fits the caller's buffer
	size int    // the datagram's full size
}

// tryRecvNetlink takes (or with MSG_PEEK looks at) the next datagram queued for
// the program, through dup, a copy of its fd.
func tryRecvNetlink(dup, max, flags int) (nlReceived, error) {
	if flags&unix.MSG_ERRQUEUE != 0 {
		return nlReceived{}, unix.EAGAIN // the stack reports no errors that way
	}
	if flags&unix.MSG_OOB != 0 {
		return nlReceived{}, unix.EOPNOTSUPP
	}
	buf := make([]byte, max)
	n, _, _, _, err := unix.Recvmsg(dup, buf, nil, flags&unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
	if err != nil {
		return nlReceived{}, err
	}
	return nlReceived{data: buf[:min(n, len(buf))], size: n}, nil
}

// recvWait waits for a datagram for a blocking caller, until its
// SO_RCVTIMEO passes (EAGAIN) or it stops waiting (ErrGone).
func (s *nlSocket) recvWait(c *intercept.Call, dup, max, flags int, deadline time.Time) (nlReceived, error) {
	for {
		r, err := tryRecvNetlink(dup, max, flags)
		if err != unix.EAGAIN || flags&unix.MSG_ERRQUEUE != 0 {
			return r, err
		}
		wait := 100 * time.Millisecond
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return nlReceived{}, unix.EAGAIN
			}
			wait = min(wait, left)
		}
		p := []unix.PollFd{{Fd: int32(dup), Events: unix.POLLIN}}
		unix.Poll(p, int(wait/time.Millisecond)+1)
		select {
		case <-c.Context().Done():
			return nlReceived{}, intercept.ErrGone
		default:
		}
		if !c.Valid() {
			return nlReceived{}, intercept.ErrGone
		}
	}
}

// recvThen takes one datagram for c and passes it to answer; a caller that
// blocks waits in a goroutine of its own.
func (s *nlSocket) recvThen(c *intercept.Call, max, flags int, answer func(*intercept.Call, nlReceived, error)) {
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		answerErr(c, err)
		return
	}
	r, err := tryRecvNetlink(dup, max, flags)
	if err == unix.EAGAIN && flags&unix.MSG_ERRQUEUE == 0 {
		if block, deadline := blocking(dup, flags); block {
			c.Park(func(c *intercept.Call) {
				r, err := s.recvWait(c, dup, max, flags, deadline)
				unix.Close(dup)
				answer(c, r, err)
			})
			return
		}
	}
	unix.Close(dup)
	answer(c, r, err)
}

func nlRecvResult(r nlReceived, flags int) int64 {
	if flags&unix.MSG_TRUNC != 0 {
		return int64(r.size)
	}
	return int64(len(r.data))
}

// writeNlResult fills in a msghdr after a receive: the kernel as sender,
// no control messages, MSG_TRUNC when the datagram did not fit.
func writeNlResult(c *intercept.Call, ptr uint64, h msghdr, r nlReceived) error {
	le := binary.NativeEndian
	if h.name != 0 {
		sa := sockaddrNl(0, 0)
		if err := c.WriteMem(h.name, sa[:min(int(h.namelen), len(sa))]); err != nil {
			return err
		}
		var nl [4]byte
		le.PutUint32(nl[:], uint32(len(sa)))
		if err := c.WriteMem(ptr+offMsgNamelen, nl[:]); err != nil {
			return err
		}
	}
	var tail [12]byte // msg_controllen (8), msg_flags (4)
	if r.size > len(r.data) {
		le.PutUint32(tail[8:], unix.MSG_TRUNC)
	}
	return c.WriteMem(ptr+offMsgControlen, tail[:])
}

func (s *nlSocket) recvmsg(c *intercept.Call) {
	ptr, flags := c.Arg(1), int(int32(c.Arg(2)))
	h, err := readMsghdr(c, ptr)
	if err != nil {
		answerErr(c, err)
		return
	}
	s.recvThen(c, h.total, flags, func(c *intercept.Call, r nlReceived, err error) {
		if err == nil {
			err = h.scatter(c, r.data)
		}
		if err == nil {
			err = writeNlResult(c, ptr, h, r)
		}
		if err != nil {
			answerRecvErr(c, err)
			return
		}
		c.Return(nlRecvResult(r, flags))
	})
}

func (s *nlSocket) recvfrom(c *intercept.Call) {
	bufPtr, length, flags := c.Arg(1), int(min(c.Arg(2), maxDatagram+1)), int(int32(c.Arg(3)))
	s.recvThen(c, length, flags, func(c *intercept.Call, r nlReceived, err error) {
		if err == nil {
			err = c.WriteMem(bufPtr, r.data)
		}
		if err == nil && c.Arg(4) != 0 {
			err = writeAddrResult(c, c.Arg(4), c.Arg(5), sockaddrNl(0, 0))
		}
		if err != nil {
			answerRecvErr(c, err)
			return
		}
		c.Return(nlRecvResult(r, flags))
	})
}

// recvmmsg answers recvmmsg: the datagrams queued, waiting for the first
// if the socket blocks (the timeout is not applied: netlink answers come
// at once).
func (s *nlSocket) recvmmsg(c *intercept.Call) {
	vec, vlen, flags := c.Arg(1), min(int(uint32(c.Arg(2))), maxIov), int(int32(c.Arg(3)))
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		answerErr(c, err)
		return
	}
	defer unix.Close(dup)
	block, deadline := blocking(dup, flags)
	got := 0
	for ; got < vlen; got++ {
		ptr := vec + uint64(got)*sizeofMmsghdr
		h, err := readMsghdr(c, ptr)
		if err == nil {
			var r nlReceived
			if block && got == 0 {
				r, err = s.recvWait(c, dup, h.total, flags&^unix.MSG_WAITFORONE, deadline)
			} else {
				r, err = tryRecvNetlink(dup, h.total, flags&^unix.MSG_WAITFORONE)
			}
			if err == nil {
				err = h.scatter(c, r.data)
			}
			if err == nil {
				err = writeNlResult(c, ptr, h, r)
			}
			if err == nil {
				var b [4]byte
				binary.NativeEndian.PutUint32(b[:], uint32(nlRecvResult(r, flags)))
				err = c.WriteMem(ptr+offMmsgLen, b[:])
			}
		}
		if err != nil {
			if got == 0 {
				answerRecvErr(c, err)
				return
			}
			break
		}
	}
	c.Return(int64(got))
}

// programGone polls our end: true when the program has closed its end.
func programGone(conn *net.UnixConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			gone = p[0].Revents&unix.POLLHUP != 0
		}
	})
	return gone
}
