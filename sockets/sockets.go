// Package sockets serves a program's AF_INET and AF_INET6 sockets from a
// netstack stack. It answers the socket calls that package intercept hands
// it: socket() gets one end of an AF_UNIX socketpair, a real kernel fd, so
// that read, write, poll, epoll, fork, dup and close need no help; the
// other end is bridged to a netstack endpoint by a relay. connect, bind,
// listen, accept, getsockname, getpeername and the socket options are
// answered here with the kernel's semantics and error numbers.
//
// Sockets are recognised by the inode of the program's fd, so the answer is
// right whatever fd number, dup or child process the call comes from.
package sockets

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/syserr"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/internal/fdpoll"
)

// Manager answers socket calls from the sockets of one stack. It is an
// intercept.Handler.
type Manager struct {
	ns     *stack.Stack
	blocks ControlBlocks
	logf   func(string, ...any)

	mu    sync.Mutex
	socks map[uint64]*socket // by inode of the program's end

	refused sync.Map // socket kinds already logged as refused

	redirects, reverse map[netip.AddrPort]netip.AddrPort // see Redirect
	nl                 netlinks                          // netlink sockets and interface ioctls (netlink.go)
	done               chan struct{}
	closed             sync.Once

	act atomic.Pointer[activity] // nil unless TrackActivity

	holdPort PortHolder // nil unless HoldPorts

	// pollr watches our ends of the connected TCP sockets for the relays
	// (see relay.go); made with the first relay, closed by Close.
	pollMu  sync.Mutex
	pollr   *fdpoll.Poller
	pollErr error
}

// poller returns the manager's poller, starting it the first time.
func (m *Manager) poller() (*fdpoll.Poller, error) {
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	if m.pollr == nil && m.pollErr == nil {
		select {
		case <-m.done:
			return nil, fdpoll.ErrClosed
		default:
		}
		m.pollr, m.pollErr = fdpoll.New()
	}
	return m.pollr, m.pollErr
}

// ControlBlocks gives the latest state netstack's TCP probe reported for
// a connection (observe.Hub's Latest), from which TCP_INFO gets the values
// netstack does not keep itself.
type ControlBlocks func(stack.TransportEndpointID) (*tcp.TCPEndpointState, bool)

// New returns a Manager serving sockets from ns. blocks, if not nil, fills
// TCP_INFO's sequence-derived fields (unacked, sacked, lost, bytes_acked,
// bytes_sent, window scales). logf reports what the program asked for and
// did not get (nil: discard).
func New(ns *stack.Stack, blocks ControlBlocks, logf func(string, ...any)) *Manager {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	m := &Manager{ns: ns, blocks: blocks, logf: logf, socks: map[uint64]*socket{}, done: make(chan struct{})}
	go m.sweep()
	return m
}

// Close releases every socket: netstack endpoints are closed and the
// program's ends see EOF.
func (m *Manager) Close() {
	m.closed.Do(func() {
		close(m.done)
		m.mu.Lock()
		socks := make([]*socket, 0, len(m.socks))
		for _, s := range m.socks {
			socks = append(socks, s)
		}
		m.mu.Unlock()
		for _, s := range socks {
			s.close()
		}
		m.closeNetlinks()
		m.pollMu.Lock()
		if m.pollr != nil {
			m.pollr.Close()
		}
		m.pollErr = fdpoll.ErrClosed
		m.pollMu.Unlock()
	})
}

// MayPark says which calls can wait for the network: only those get a
// goroutine of their own.
// Receives and sends that have to wait after all hand themselves off
// (Call.Park); the mmsg forms, which may wait between datagrams, always
// get one.
func (m *Manager) MayPark(nr int) bool {
	switch nr {
	case unix.SYS_CONNECT, unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_SENDMMSG, unix.SYS_RECVMMSG:
		return true
	}
	return false
}

// Handle answers one call.
func (m *Manager) Handle(c *intercept.Call) {
	a := m.activity()
	a.begin()
	defer a.end()
	if c.Nr() == unix.SYS_SOCKET {
		if !m.netlinkSocket(c) {
			m.socket(c)
		}
		return
	}
	if c.Nr() == unix.SYS_IOCTL && m.interfaceIoctl(c) {
		return
	}
	fd := int(int32(c.Arg(0)))
	s, ino, err := m.lookup(c, fd)
	if err != nil {
		answerErr(c, err)
		return
	}
	if s == nil && ino != 0 {
		if nl := m.netlinkByInode(ino); nl != nil {
			nl.handle(c)
			return
		}
	}
	if s == nil {
		// Not one of ours (an AF_UNIX socket, a file, a socket made before
		// the filter): the kernel does the call and its own checks.
		c.Continue()
		return
	}
	if s.dg != nil {
		s.handleDgram(c)
		return
	}
	// TCP: the data calls (sendmsg, recvmsg, … FIONREAD) are the kernel's,
	// on the program's end of the stream pair.
	switch c.Nr() {
	case unix.SYS_CONNECT:
		s.connect(c)
	case unix.SYS_BIND:
		s.bind(c)
	case unix.SYS_LISTEN:
		s.listen(c)
	case unix.SYS_ACCEPT:
		s.accept(c, 0)
	case unix.SYS_ACCEPT4:
		s.accept(c, int(int32(c.Arg(3))))
	case unix.SYS_GETSOCKNAME:
		s.getsockname(c)
	case unix.SYS_GETPEERNAME:
		s.getpeername(c)
	case unix.SYS_SETSOCKOPT:
		s.setsockopt(c)
	case unix.SYS_GETSOCKOPT:
		s.getsockopt(c)
	case unix.SYS_SHUTDOWN:
		s.shutdown(c)
	case unix.SYS_SENDTO:
		s.streamSendto(c)
	case unix.SYS_SENDMSG:
		s.streamSendmsg(c)
	default:
		c.Continue()
	}
}

// answerErr answers c with err's errno (EIO for an error without one); a
// call whose caller has gone needs no answer, but is marked answered.
func answerErr(c *intercept.Call, err error) {
	var en unix.Errno
	if !errors.As(err, &en) {
		if !errors.Is(err, intercept.ErrGone) {
			c.Logf("%v", err)
		}
		en = unix.EIO
	}
	c.Fail(en)
}

// lookup finds the socket behind the caller's fd: nil if it is not ours,
// and the socket's inode (0 for an fd that is not a socket).
func (m *Manager) lookup(c *intercept.Call, fd int) (*socket, uint64, error) {
	st, err := c.StatFD(fd)
	if err != nil {
		return nil, 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.socks[st.Ino], st.Ino, nil
}

// Count is the number of program sockets being served.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.socks)
}

func (m *Manager) add(s *socket) {
	m.mu.Lock()
	m.socks[s.ino] = s
	m.mu.Unlock()
}

func (m *Manager) remove(s *socket) {
	m.mu.Lock()
	if m.socks[s.ino] == s {
		delete(m.socks, s.ino)
	}
	m.mu.Unlock()
}

// refuse logs a socket kind the stack does not serve yet, once per kind, so
// that nothing bypasses the stack silently and the log stays readable.
func (m *Manager) refuse(kind string) {
	if _, seen := m.refused.LoadOrStore(kind, true); !seen {
		m.logf("refused a %s socket: not served by the user-level stack yet (EPROTONOSUPPORT)", kind)
	}
}

// noFreePort says, once, why a connect found no free local port: the
// stack's ephemeral range may be a small block of the host's (--net host).
func (m *Manager) noFreePort() {
	if _, seen := m.refused.LoadOrStore("no free port", true); !seen {
		lo, hi := m.ns.PortRange()
		m.logf("connect: every port of the stack's ephemeral range %d-%d is in use (EADDRNOTAVAIL); "+
			"a connection closed first on this side holds its port 60 s in TIME-WAIT and gives it to a new one only after 1 s "+
			"(on --net host, reserve more: host:IFACE,ephemeral=N)", lo, hi)
	}
}

// sweep notices sockets the program has closed that no relay watches
// (unconnected, connecting, listening ones) and releases their endpoints.
func (m *Manager) sweep() {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	var mem memoryReturn
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		}
		if m.activity() != nil {
			continue // Quiet releases closed sockets at known moments
		}
		m.reapClosed(func(*socket) bool { return true })
		// Connections count until netstack is done with them, TIME-WAIT
		// included: their endpoints hold memory until then.
		if mem.tick(m.Count() + int(m.ns.Stats().TCP.CurrentConnected.Value())) {
			debug.FreeOSMemory()
		}
	}
}

const sweepInterval = 250 * time.Millisecond

// memoryReturn decides when the memory of many connections gone goes back
// to the system. Go's runtime keeps freed memory mapped and returns it
// only slowly, so a daemon that served thousands of connections would
// stay as large as at its peak long after they closed. Once what is held
// has fallen to half a peak of at least freeAfter, the heap is collected
// and its free pages returned at once; and once more settleTicks later,
// for what the connections' teardown freed after that moment (returning
// only when the sockets had halved, a daemon whose 15,000 connections
// closed kept 182 MiB of its 203 MiB peak resident).
type memoryReturn struct {
	peak   int // the most held since the last return
	settle int // ticks until the second return; 0: none due
}

const (
	freeAfter   = 1000
	settleTicks = int(2 * time.Second / sweepInterval)
)

// tick takes what is held now (sockets and connections) and reports
// whether to return memory now.
func (r *memoryReturn) tick(held int) bool {
	switch {
	case held > r.peak:
		r.peak = held
		r.settle = 0
	case r.peak >= freeAfter && held <= r.peak/2:
		r.peak = held
		r.settle = settleTicks
		return true
	case r.settle > 0:
		r.settle--
		return r.settle == 0
	}
	return false
}

// reapClosed releases the sockets selected by which that the program has
// closed and no relay watches.
func (m *Manager) reapClosed(which func(*socket) bool) {
	m.mu.Lock()
	var idle []*socket
	for _, s := range m.socks {
		if which(s) {
			idle = append(idle, s)
		}
	}
	m.mu.Unlock()
	for _, s := range idle {
		if s.unwatched() && s.inCall.Load() == 0 && s.programClosed() {
			s.close()
		}
	}
}

// reapClosedListeners releases listeners the program has closed before a
// connect goes out. close() is not intercepted, so without this a connect
// right after closing a listener of the same stack would still reach it,
// where the kernel refuses it.
func (m *Manager) reapClosedListeners() {
	m.reapClosed(func(s *socket) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.state == stateListening
	})
}

// errnoOf is the Linux errno for a netstack error.
func errnoOf(err tcpip.Error) unix.Errno {
	if e := syserr.TranslateNetstackError(err); e != nil {
		return unix.Errno(e.ToLinux())
	}
	return unix.EIO
}

// newPair makes the socketpair behind one program socket: ours (bridged
// to netstack, non-blocking, in Go's poller) and theirs (to be injected),
// with theirs' inode. Both ends are made non-blocking at once and theirs
// set back to blocking if asked, and ours becomes an *os.File rather than
// a net.Conn: net.FileConn's duplicate descriptor, its flag changes and
// its look-ups of the socket cost about ten system calls more per socket.
func newPair(sotype int, nonblock bool) (ours *os.File, theirs int, ino uint64, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, 0, err
	}
	fail := func(err error) (*os.File, int, uint64, error) {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, -1, 0, err
	}
	if !nonblock {
		// A new socket has no other status flag to keep.
		if _, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETFL, 0); err != nil {
			return fail(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fds[1], &st); err != nil {
		return fail(err)
	}
	return os.NewFile(uintptr(fds[0]), "ustack-socket"), fds[1], st.Ino, nil
}

// readAddrArg reads a (pointer, length) sockaddr argument pair.
func readAddrArg(c *intercept.Call, ptr uint64, length int) ([]byte, error) {
	if length < 0 || length > sizeofSockaddrStor {
		return nil, unix.EINVAL
	}
	b := make([]byte, length)
	if err := c.ReadMem(ptr, b); err != nil {
		return nil, err
	}
	return b, nil
}

// writeAddrResult stores sa for getsockname, getpeername, accept and
// recvfrom: at most *lenPtr bytes of it (the kernel truncates silently),
// then its full length into *lenPtr; before (a received datagram) is
// written first, in the same system call.
func writeAddrResult(c *intercept.Call, ptr, lenPtr uint64, sa []byte, before ...intercept.MemWrite) error {
	var lb [4]byte
	if err := c.ReadMem(lenPtr, lb[:]); err != nil {
		return err
	}
	n := int(int32(nativeUint32(lb[:])))
	if n < 0 {
		return unix.EINVAL
	}
	if n > len(sa) {
		n = len(sa)
	}
	putNativeUint32(lb[:], uint32(len(sa)))
	return c.WriteMems(append(before, intercept.MemWrite{Addr: ptr, Buf: sa[:n]}, intercept.MemWrite{Addr: lenPtr, Buf: lb[:]})...)
}

// Settle waits until no TCP endpoint of the stack still has data of ours
// to deliver (every connection is established-and-idle, closed, or past
// having its FIN acknowledged), or ctx ends. Call it after the program has
// exited and before closing the stack, so that what the program wrote
// last is not lost.
func (m *Manager) Settle(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		busy := false
		for _, ep := range m.ns.RegisteredEndpoints() {
			te, ok := ep.(*tcp.Endpoint)
			if !ok {
				continue
			}
			switch tcp.EndpointState(te.State()) {
			case tcp.StateFinWait1, tcp.StateClosing, tcp.StateLastAck, tcp.StateCloseWait, tcp.StateSynSent:
				busy = true
			}
		}
		m.mu.Lock()
		for _, s := range m.socks {
			if s.unwatched() {
				continue
			}
			busy = true // a relay is still copying
		}
		m.mu.Unlock()
		if !busy {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serving finds the program socket ep serves, if any.
func (m *Manager) serving(ep tcpip.Endpoint) *socket {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.socks {
		s.mu.Lock()
		mine := s.ep == ep
		s.mu.Unlock()
		if mine {
			return s
		}
	}
	return nil
}

// ByteCounts reports the bytes the program wrote into the connection ep
// serves and TCP_INFO's bytes_received for it.
func (m *Manager) ByteCounts(ep tcpip.Endpoint) (written, received uint64, ok bool) {
	s := m.serving(ep)
	if s == nil {
		return 0, 0, false
	}
	written, received = s.byteCounts(ep)
	return written, received, true
}

// Owner names the process that holds the program socket served by ep (for
// ss -p): the process of the thread that got it, and its command name.
func (m *Manager) Owner(ep tcpip.Endpoint) (pid int, comm string, ok bool) {
	s := m.serving(ep)
	if s == nil {
		return 0, "", false
	}
	s.mu.Lock()
	tid := s.ownerTid
	s.mu.Unlock()
	if tid == 0 {
		return 0, "", false
	}
	pid, err := intercept.Tgid(tid)
	if err != nil {
		return 0, "", false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return 0, "", false
	}
	return pid, strings.TrimSpace(string(b)), true
}
