package sockets

import (
	"encoding/binary"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/internal/growstack"
)

type state int

const (
	stateNew        state = iota // created, maybe bound
	stateConnecting              // a connect is under way in netstack
	stateConnected               // the relay runs
	stateFailed                  // the last connect failed
	stateListening
	stateClosed
)

// socket is one program socket: the program holds one end of an AF_UNIX
// socketpair, we hold the other (conn) and a netstack TCP endpoint.
type socket struct {
	m      *Manager
	ino    uint64
	domain int                           // AF_INET or AF_INET6
	proto  tcpip.TransportProtocolNumber // TCP, UDP, ICMPv4 or ICMPv6
	conn   *os.File
	dg     *dgram // datagram sockets only

	inert map[[2]int]int // values of inertOptions the program set

	// The thread that got the program's end, and the fd number it got:
	// where to find the program's end later (see reset).
	ownerTid, ownerFD int
	resetting         atomic.Bool           // reset is under way: the network -> program copy stopped
	connClosed        atomic.Bool           // our end is closed, or about to be
	rl                atomic.Pointer[relay] // the relay, once connected

	// Calls of the program being answered on the socket: while one is
	// (a blocking connect), the socket stays even if the program closes
	// its fd, as the kernel keeps a socket a call holds.
	inCall atomic.Int32

	// Bytes the relay moved from the program to the endpoint and back
	// (TCP_INFO's byte counts are derived from them).
	appWritten, appRead atomic.Uint64

	mu      sync.Mutex
	state   state
	ep      tcpip.Endpoint
	wq      *waiter.Queue
	soError unix.Errno // pending error for SO_ERROR or the next connect
	// unreported is set from the start of a connect until a connect()
	// call has delivered its success to the program. Linux's socket stays
	// "connecting" until a connect() sees the outcome, so the next call
	// answers 0 once, then EISCONN: after a non-blocking connect, and
	// after a blocking one a signal interrupted (SA_RESTART makes it
	// again, as a new notification, which may come after the connection
	// is up).
	unreported bool
	connDone   chan struct{} // closed when the connect under way ends
	// established is set when a connect succeeds: a blocking connect
	// answers 0 even if the connection has ended and the socket been
	// released (the program closed it) by the time the call looks.
	established bool

	// Listening sockets: connections taken from netstack's accept queue
	// that the program has not accepted yet; one token byte per connection
	// sits in the program's end so that its poll/epoll sees them. At most
	// heldConns are taken, so netstack's queue, sized from the backlog,
	// fills and drops SYNs as Linux's does.
	pending  []pendingConn
	newToken chan struct{} // closed and replaced when a token is written
	room     chan struct{} // closed and replaced when the program accepts
	fillMu   sync.Mutex    // one taker from netstack's queue at a time

	release func() // gives back the port's hold (HoldPorts); nil if none
}

// heldConns is how many finished connections a listener takes out of
// netstack ahead of the program's accept: one, so that an accept finds its
// token at once while netstack's queue holds the rest of the backlog.
const heldConns = 1

type pendingConn struct {
	ep tcpip.Endpoint
	wq *waiter.Queue
}

func netProto(domain int) tcpip.NetworkProtocolNumber {
	if domain == unix.AF_INET6 {
		return ipv6.ProtocolNumber
	}
	return ipv4.ProtocolNumber
}

// newEndpoint makes a netstack TCP endpoint with Linux's defaults.
func (m *Manager) newEndpoint(domain int) (tcpip.Endpoint, *waiter.Queue, tcpip.Error) {
	wq := new(waiter.Queue)
	ep, err := m.ns.NewEndpoint(tcp.ProtocolNumber, netProto(domain), wq)
	if err != nil {
		return nil, nil, err
	}
	if domain == unix.AF_INET6 {
		ep.SocketOptions().SetV6Only(false) // net.ipv6.bindv6only=0
	}
	// Nagle on, as a new Linux socket has it; programs that want
	// otherwise set TCP_NODELAY, as they do on Linux.
	ep.SocketOptions().SetDelayOption(true)
	return ep, wq, nil
}

// socket answers socket(domain, type, protocol).
func (m *Manager) socket(c *intercept.Call) {
	domain := int(int32(c.Arg(0)))
	typ := int(int32(c.Arg(1)))
	proto := int(int32(c.Arg(2)))
	flags := typ &^ 0xf
	typ &= 0xf
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		c.Fail(unix.EINVAL)
		return
	}
	nonblock, cloexec := flags&unix.SOCK_NONBLOCK != 0, flags&unix.SOCK_CLOEXEC != 0
	switch {
	case typ == unix.SOCK_STREAM && (proto == 0 || proto == unix.IPPROTO_TCP):
	case typ == unix.SOCK_DGRAM && (proto == 0 || proto == unix.IPPROTO_UDP):
		m.dgramSocket(c, domain, udp.ProtocolNumber, nonblock, cloexec)
		return
	case typ == unix.SOCK_DGRAM && domain == unix.AF_INET && proto == unix.IPPROTO_ICMP:
		m.dgramSocket(c, domain, icmp.ProtocolNumber4, nonblock, cloexec)
		return
	case typ == unix.SOCK_DGRAM && domain == unix.AF_INET6 && proto == unix.IPPROTO_ICMPV6:
		m.dgramSocket(c, domain, icmp.ProtocolNumber6, nonblock, cloexec)
		return
	case typ == unix.SOCK_STREAM, typ == unix.SOCK_DGRAM:
		c.Fail(unix.EPROTONOSUPPORT)
		return
	case typ == unix.SOCK_RAW:
		m.refuse("raw")
		c.Fail(unix.EPROTONOSUPPORT)
		return
	default:
		c.Fail(unix.EINVAL)
		return
	}
	ep, wq, terr := m.newEndpoint(domain)
	if terr != nil {
		c.Fail(errnoOf(terr))
		return
	}
	s, theirs, err := m.newSocket(domain, tcp.ProtocolNumber, ep, wq, nonblock, stateNew)
	if err != nil {
		ep.Close()
		answerErr(c, err)
		return
	}
	s.inject(c, theirs, cloexec)
}

// newSocket makes the socketpair for ep and registers the socket in its
// first state (set before other goroutines can see it); the caller injects
// theirs.
func (m *Manager) newSocket(domain int, proto tcpip.TransportProtocolNumber, ep tcpip.Endpoint, wq *waiter.Queue, nonblock bool, st state) (*socket, int, error) {
	sotype := unix.SOCK_STREAM
	if proto != tcp.ProtocolNumber {
		sotype = unix.SOCK_SEQPACKET // keeps datagram boundaries, and reports the program's close
	}
	conn, theirs, ino, err := newPair(sotype, nonblock)
	if err != nil {
		return nil, -1, err
	}
	s := &socket{m: m, ino: ino, domain: domain, proto: proto, conn: conn, ep: ep, wq: wq, state: st,
		newToken: make(chan struct{}), room: make(chan struct{})}
	if proto != tcp.ProtocolNumber {
		s.dg = &dgram{done: make(chan struct{})}
	}
	m.add(s)
	return s, theirs, nil
}

// inject answers c with theirs installed in the program; on failure the
// socket is released. It reports whether the program got it.
func (s *socket) inject(c *intercept.Call, theirs int, cloexec bool) bool {
	fd, err := c.ReturnFD(theirs, cloexec)
	unix.Close(theirs)
	if err != nil {
		s.close()
		return false
	}
	s.setOwner(c.Tid(), fd)
	return true
}

// closeConn closes our end, first saying so to the wait points that watch
// it (a closed fd cannot be polled).
func (s *socket) closeConn() {
	s.connClosed.Store(true)
	s.conn.Close()
	if r := s.rl.Load(); r != nil {
		r.kickFd()
	}
}

// ourEndHas reports whether our end has any of events now, or is closed.
func (s *socket) ourEndHas(events int16) bool {
	if s.connClosed.Load() {
		return true
	}
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return true
	}
	has := false
	if rc.Control(func(fd uintptr) { has = pollNow(fd, events) }) != nil {
		return true
	}
	return has
}

// setOwner records who got the program's end: the thread and its fd.
func (s *socket) setOwner(tid, fd int) {
	s.mu.Lock()
	s.ownerTid, s.ownerFD = tid, fd
	s.mu.Unlock()
}

// close releases the socket: its endpoint, our end, pending connections.
func (s *socket) close() {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return
	}
	s.state = stateClosed
	if s.dg != nil {
		close(s.dg.done)
	}
	ep, pending, release := s.ep, s.pending, s.release
	s.pending, s.release = nil, nil
	// An accept loop waiting for room learns that the listener is gone.
	close(s.room)
	s.room = make(chan struct{})
	s.mu.Unlock()
	s.m.remove(s)
	if ep != nil {
		ep.Close()
	}
	// Connections a closed listener never handed out are reset, as Linux
	// resets those left in its accept queue.
	for _, p := range pending {
		p.ep.Abort()
	}
	if release != nil {
		release()
	}
	s.closeConn()
}

// unwatched reports whether no relay watches the socket for the program
// closing it.
func (s *socket) unwatched() bool {
	if s.dg != nil {
		return false // its pump from the program watches from the start
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state != stateConnected && s.state != stateClosed
}

// programClosed reports whether the program has closed its end (every copy
// of it): then our end polls POLLHUP.
func (s *socket) programClosed() bool {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return true
	}
	hup := false
	rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 && p[0].Revents&unix.POLLHUP != 0 {
			hup = true
		}
	})
	return hup
}

// fdFlags returns the file status flags (O_NONBLOCK) of the caller's fd,
// which it may have changed with fcntl since socket().
func fdFlags(c *intercept.Call) (int, error) {
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		return 0, err
	}
	defer unix.Close(dup)
	return unix.FcntlInt(uintptr(dup), unix.F_GETFL, 0)
}

// callWait makes the wait point for a call of the program held here.
func (s *socket) callWait(c *intercept.Call) *waitPoint {
	return s.m.activity().newWait(c.Tid(), "a held call")
}

// park waits for ch at w (made by callWait) on behalf of a blocking call;
// ready reports whether the wait would end now (for the activity
// bookkeeping). It gives up when the caller stops waiting (a signal
// interrupted it; a restarted call comes back as a new notification) or
// the program has exited.
func (s *socket) park(w *waitPoint, c *intercept.Call, ch <-chan struct{}, ready func() bool) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		w.parkNotified(ready)
		select {
		case <-ch:
			w.unpark()
			return nil
		case <-c.Context().Done():
			w.unpark()
			return intercept.ErrGone
		case <-t.C:
			w.unpark()
			if !c.Valid() {
				return intercept.ErrGone
			}
		}
	}
}

// connect answers connect(fd, addr, len).
func (s *socket) connect(c *intercept.Call) {
	s.inCall.Add(1)
	defer s.inCall.Add(-1)
	b, err := readAddrArg(c, c.Arg(1), int(int32(c.Arg(2))))
	if err != nil {
		answerErr(c, err)
		return
	}
	if isUnspec(b) && s.disconnectUnconnected() {
		c.Return(0)
		return
	}
	addr, en := decodeSockaddr(b, s.domain)
	if en != 0 {
		c.Fail(en)
		return
	}
	addr = s.redirected(addr)
	fl, err := fdFlags(c)
	if err != nil {
		answerErr(c, err)
		return
	}
	nonblock := fl&unix.O_NONBLOCK != 0

	s.m.reapClosedListeners()
	s.mu.Lock()
	switch s.state {
	case stateConnected:
		defer s.mu.Unlock()
		if !s.unreported {
			c.Fail(unix.EISCONN)
		} else if c.Return(0) == nil {
			s.unreported = false
		}
		return
	case stateListening, stateClosed:
		s.mu.Unlock()
		c.Fail(unix.EINVAL)
		return
	case stateConnecting:
		done := s.connDone
		s.mu.Unlock()
		if nonblock {
			c.Fail(unix.EALREADY)
			return
		}
		s.waitConnect(c, done)
		return
	case stateFailed:
		if s.soError != 0 {
			// The failure of a non-blocking connect not yet collected
			// with SO_ERROR is what the next connect reports, as on Linux.
			en := s.soError
			s.soError = 0
			s.mu.Unlock()
			c.Fail(en)
			return
		}
		// A new attempt needs a fresh endpoint: netstack's is spent.
		ep, wq, terr := s.m.newEndpoint(s.domain)
		if terr != nil {
			s.mu.Unlock()
			c.Fail(errnoOf(terr))
			return
		}
		s.ep.Close()
		s.ep, s.wq = ep, wq
	}
	a := s.m.activity()
	cw := a.newWait(0, "connect completion")
	entry, notify := notifyEntry(cw, waiter.WritableEvents|waiter.EventErr|waiter.EventHUp)
	s.wq.EventRegister(&entry)
	terr := s.ep.Connect(addr)
	if _, started := terr.(*tcpip.ErrConnectStarted); terr != nil && !started {
		s.wq.EventUnregister(&entry)
		s.mu.Unlock()
		if _, noPort := terr.(*tcpip.ErrNoPortAvailable); noPort {
			// Linux's TCP connect with no free local port (netstack's
			// errno for it, EAGAIN, is what Linux gives UDP's autobind).
			s.m.noFreePort()
			c.Fail(unix.EADDRNOTAVAIL)
			return
		}
		c.Fail(errnoOf(terr))
		return
	}
	s.state = stateConnecting
	done := make(chan struct{})
	s.connDone = done
	// A non-blocking connect returns at once, and its fd must not poll
	// writable until netstack has connected: fill the program's end so
	// that it is not, and let the completion drain it, which makes the
	// writability edge that epoll (even edge-triggered) reports.
	filler := 0
	if nonblock {
		filler = s.fill(c)
	}
	s.unreported = true
	ep, wq := s.ep, s.wq
	s.mu.Unlock()
	a.begin()
	go func() {
		defer a.end()
		growstack.Grow()
		s.completeConnect(cw, ep, wq, &entry, notify, filler, done)
	}()
	if nonblock {
		c.Fail(unix.EINPROGRESS)
		return
	}
	s.waitConnect(c, done)
}

// disconnectUnconnected is connect(AF_UNSPEC) on a socket with no
// connection: nothing to undo, so Linux returns 0 (and forgets a failed
// attempt's error). It reports whether the socket was such a one; a
// connected or listening socket is left to the caller.
func (s *socket) disconnectUnconnected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateNew, stateFailed:
		s.soError = 0
		return true
	}
	return false
}

// waitConnect parks a blocking connect until the attempt ends and answers
// with its outcome.
func (s *socket) waitConnect(c *intercept.Call, done <-chan struct{}) {
	if err := s.park(s.callWait(c), c, done, func() bool { return isClosed(done) }); err != nil {
		// A signal interrupted the call (a Go program's threads get
		// SIGURG all the time); a restarted call reports the outcome.
		c.Fail(unix.EINTR) // nobody is listening; marks the call answered
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateConnected:
		if c.Return(0) == nil {
			s.unreported = false
		}
	case stateFailed:
		en := s.soError
		s.soError = 0
		if en == 0 {
			en = unix.ECONNREFUSED
		}
		c.Fail(en)
	default:
		if s.established {
			c.Return(0)
			return
		}
		c.Fail(unix.EBADF) // closed under us
	}
}

// fill writes into the program's end until it is full and returns how many
// bytes that took.
func (s *socket) fill(c *intercept.Call) int {
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		return 0
	}
	defer unix.Close(dup)
	buf := getRelayBuf()
	defer putRelayBuf(buf)
	total := 0
	for {
		n, err := unix.SendmsgN(dup, buf, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		total += n
		if err != nil || n == 0 {
			return total
		}
	}
}

// completeConnect waits for netstack to finish the connect, then takes the
// filler out of the program's end and starts the relay (or records the
// error for SO_ERROR).
func (s *socket) completeConnect(w *waitPoint, ep tcpip.Endpoint, wq *waiter.Queue, entry *waiter.Entry, notify chan struct{}, filler int, done chan struct{}) {
	defer close(done)
	for {
		st := tcp.EndpointState(ep.State())
		if st != tcp.StateConnecting && st != tcp.StateSynSent && st != tcp.StateSynRecv {
			break
		}
		w.parkNotified(func() bool { return len(notify) > 0 })
		<-notify
		w.unpark()
	}
	wq.EventUnregister(entry)
	terr := ep.LastError()
	st := tcp.EndpointState(ep.State())
	// CloseWait: the peer may have sent its data and FIN already.
	connected := terr == nil && (st == tcp.StateEstablished || st == tcp.StateCloseWait)
	// The state changes before the filler goes: the program's next
	// getpeername or SO_ERROR may come the instant its fd turns writable.
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return
	}
	if connected {
		s.state = stateConnected
		s.established = true
	} else {
		s.state = stateFailed
		s.soError = unix.ECONNREFUSED
		if terr != nil {
			s.soError = errnoOf(terr)
		}
	}
	s.mu.Unlock()
	if filler > 0 {
		// An error here means the program closed the socket; the relay
		// sees the same and cleans up.
		io.CopyN(io.Discard, s.conn, int64(filler))
	}
	if connected {
		s.startRelay(ep, wq)
	}
}

// byteCounts gives the bytes the program wrote into the connection and
// Linux's bytes_received, which netstack does not keep: what the program
// was given plus what ep's receive queue holds.
func (s *socket) byteCounts(ep tcpip.Endpoint) (written, received uint64) {
	recvQ, terr := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
	if terr != nil {
		recvQ = 0
	}
	return s.appWritten.Load(), s.appRead.Load() + uint64(recvQ)
}

// bind answers bind(fd, addr, len).
func (s *socket) bind(c *intercept.Call) {
	b, err := readAddrArg(c, c.Arg(1), int(int32(c.Arg(2))))
	if err != nil {
		answerErr(c, err)
		return
	}
	addr, en := decodeBindSockaddr(b, s.domain)
	if en != 0 {
		c.Fail(en)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		c.Fail(unix.EINVAL)
		return
	}
	if !bindable(s.m.ns, addr.Addr) {
		c.Fail(unix.EADDRNOTAVAIL)
		return
	}
	release, en := s.holdFor(addr)
	if en != 0 {
		c.Fail(en)
		return
	}
	if terr := s.ep.Bind(unspecified(addr)); terr != nil {
		release()
		c.Fail(errnoOf(terr))
		return
	}
	s.release = release
	c.Return(0)
}

// listen answers listen(fd, backlog).
func (s *socket) listen(c *intercept.Call) {
	backlog := int(int32(c.Arg(1)))
	if backlog < 0 || backlog > 4096 {
		backlog = 4096 // net.core.somaxconn
	}
	// Linux queues backlog+1 finished connections; netstack's queue holds
	// its capacity, and one more is held here (heldConns). netstack needs
	// room for one, so backlog 0 queues two rather than one.
	capacity := max(backlog+1-heldConns, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateListening:
		// Linux lets a listener change its backlog.
		if terr := s.ep.Listen(capacity); terr != nil {
			c.Fail(errnoOf(terr))
			return
		}
		c.Return(0)
		return
	case stateNew:
	default:
		c.Fail(unix.EINVAL)
		return
	}
	if terr := s.ep.Listen(capacity); terr != nil {
		c.Fail(errnoOf(terr))
		return
	}
	s.state = stateListening
	a := s.m.activity()
	a.begin()
	go func(ep tcpip.Endpoint, wq *waiter.Queue) {
		defer a.end()
		s.acceptLoop(a.newWait(0, "accept loop"), ep, wq)
	}(s.ep, s.wq)
	c.Return(0)
}

type takeResult int

const (
	took      takeResult = iota // a connection was taken and announced
	heldFull                    // heldConns are waiting for the program
	queueIdle                   // netstack has no finished connection
	listenEnd                   // the listener or the program's end is gone
)

// takeOne moves one finished connection from netstack's accept queue to
// pending and announces it with a token, if there is room.
func (s *socket) takeOne(ep tcpip.Endpoint) takeResult {
	s.fillMu.Lock()
	defer s.fillMu.Unlock()
	s.mu.Lock()
	held := len(s.pending)
	s.mu.Unlock()
	if held >= heldConns {
		return heldFull
	}
	nep, nwq, terr := ep.Accept(nil)
	if _, wait := terr.(*tcpip.ErrWouldBlock); wait {
		return queueIdle
	}
	if terr != nil {
		return listenEnd // the listener was closed
	}
	inherit(ep, nep)
	s.mu.Lock()
	if s.state != stateListening {
		s.mu.Unlock()
		// The listener closed while this connection was on its way to
		// pending: it is reset like the rest of its queue, not closed
		// with a FIN that would leave one end in TIME-WAIT.
		nep.Abort()
		return listenEnd
	}
	s.pending = append(s.pending, pendingConn{ep: nep, wq: nwq})
	s.mu.Unlock()
	if !s.writeToken() {
		return listenEnd
	}
	return took
}

// inherit gives an accepted connection the listener's socket options: on
// Linux an accepted socket starts as a copy of its listener (Nagle or
// TCP_NODELAY, keep-alive and its timers, SO_LINGER), where netstack passes
// on only a few.
func inherit(l, n tcpip.Endpoint) {
	lo, no := l.SocketOptions(), n.SocketOptions()
	no.SetDelayOption(lo.GetDelayOption())
	no.SetKeepAlive(lo.GetKeepAlive())
	no.SetLinger(lo.GetLinger())
	var idle tcpip.KeepaliveIdleOption
	if l.GetSockOpt(&idle) == nil {
		n.SetSockOpt(&idle)
	}
	var intvl tcpip.KeepaliveIntervalOption
	if l.GetSockOpt(&intvl) == nil {
		n.SetSockOpt(&intvl)
	}
	if cnt, terr := l.GetSockOptInt(tcpip.KeepaliveCountOption); terr == nil {
		n.SetSockOptInt(tcpip.KeepaliveCountOption, cnt)
	}
}

// acceptLoop takes connections from netstack as they arrive and as the
// program makes room by accepting.
func (s *socket) acceptLoop(w *waitPoint, ep tcpip.Endpoint, wq *waiter.Queue) {
	entry, notify := notifyEntry(w, waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	for {
		s.mu.Lock()
		room := s.room // taken before looking, so no accept is missed
		s.mu.Unlock()
		switch s.takeOne(ep) {
		case took:
			continue
		case heldFull:
			w.park(func() bool { return isClosed(room) || isClosed(s.m.done) })
			select {
			case <-room:
			case <-s.m.done:
				w.unpark()
				return
			}
			w.unpark()
			continue
		case listenEnd:
			return
		}
		w.parkNotified(func() bool { return len(notify) > 0 || isClosed(s.m.done) })
		select {
		case <-notify:
		case <-s.m.done:
			w.unpark()
			return
		}
		w.unpark()
	}
}

// writeToken puts one token into the program's end and wakes parked
// accepts.
func (s *socket) writeToken() bool {
	if _, err := s.conn.Write([]byte{0}); err != nil {
		return false
	}
	s.mu.Lock()
	close(s.newToken)
	s.newToken = make(chan struct{})
	s.mu.Unlock()
	return true
}

// takeToken consumes one token from the program's end of the listening
// socket; it reports whether there was one and whether the fd is
// non-blocking.
func takeToken(c *intercept.Call) (got, nonblock bool, err error) {
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		return false, false, err
	}
	defer unix.Close(dup)
	fl, err := unix.FcntlInt(uintptr(dup), unix.F_GETFL, 0)
	if err != nil {
		return false, false, err
	}
	var b [1]byte
	n, _, err := unix.Recvfrom(dup, b[:], unix.MSG_DONTWAIT)
	if err == unix.EAGAIN {
		return false, fl&unix.O_NONBLOCK != 0, nil
	}
	if err != nil {
		return false, false, err
	}
	return n == 1, fl&unix.O_NONBLOCK != 0, nil
}

// accept answers accept(fd, addr, lenp) and accept4(…, flags).
func (s *socket) accept(c *intercept.Call, flags int) {
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		c.Fail(unix.EINVAL)
		return
	}
	for {
		s.mu.Lock()
		if s.state != stateListening {
			s.mu.Unlock()
			c.Fail(unix.EINVAL)
			return
		}
		wake := s.newToken // taken before looking, so no token is missed
		s.mu.Unlock()
		got, nonblock, err := takeToken(c)
		if err != nil {
			answerErr(c, err)
			return
		}
		if !got {
			if nonblock {
				c.Fail(unix.EAGAIN)
				return
			}
			if err := s.park(s.callWait(c), c, wake, func() bool { return isClosed(wake) }); err != nil {
				c.Fail(unix.EINTR)
				return
			}
			continue
		}
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			continue // cannot happen: one token per pending connection
		}
		p := s.pending[0]
		s.pending = s.pending[1:]
		close(s.room)
		s.room = make(chan struct{})
		ep := s.ep
		s.mu.Unlock()
		// Announce the next finished connection before answering, so that
		// a program accepting until EAGAIN finds it.
		s.takeOne(ep)
		s.deliver(c, p, flags)
		return
	}
}

// deliver hands an accepted connection to the program.
func (s *socket) deliver(c *intercept.Call, p pendingConn, flags int) {
	ns, theirs, err := s.m.newSocket(s.domain, tcp.ProtocolNumber, p.ep, p.wq, flags&unix.SOCK_NONBLOCK != 0, stateConnected)
	if err != nil {
		p.ep.Close()
		answerErr(c, err)
		return
	}
	if addrPtr := c.Arg(1); addrPtr != 0 {
		peer, terr := p.ep.GetRemoteAddress()
		if terr != nil {
			peer = tcpip.FullAddress{}
		}
		peer = s.original(peer)
		if err := writeAddrResult(c, addrPtr, c.Arg(2), encodeSockaddr(peer, s.domain)); err != nil {
			unix.Close(theirs)
			ns.close()
			answerErr(c, err)
			return
		}
	}
	fd, err := c.ReturnFD(theirs, flags&unix.SOCK_CLOEXEC != 0)
	if err != nil {
		unix.Close(theirs)
		// The caller was interrupted: the connection goes back first in
		// line for its next accept.
		ns.m.remove(ns)
		ns.conn.Close()
		s.mu.Lock()
		s.pending = append([]pendingConn{p}, s.pending...)
		s.mu.Unlock()
		s.writeToken()
		return
	}
	unix.Close(theirs)
	ns.setOwner(c.Tid(), fd)
	ns.holdAccepted(p.ep)
	ns.startRelay(p.ep, p.wq)
}

// getsockname answers getsockname(fd, addr, lenp).
func (s *socket) getsockname(c *intercept.Call) {
	s.mu.Lock()
	a, terr := s.ep.GetLocalAddress()
	s.mu.Unlock()
	if terr != nil {
		a = tcpip.FullAddress{}
	}
	if err := writeAddrResult(c, c.Arg(1), c.Arg(2), encodeSockaddr(a, s.domain)); err != nil {
		answerErr(c, err)
		return
	}
	c.Return(0)
}

// getpeername answers getpeername(fd, addr, lenp): ENOTCONN until the
// connection is established.
func (s *socket) getpeername(c *intercept.Call) {
	s.mu.Lock()
	connected := s.state == stateConnected
	a, terr := s.ep.GetRemoteAddress()
	s.mu.Unlock()
	if !connected || terr != nil {
		c.Fail(unix.ENOTCONN)
		return
	}
	a = s.original(a)
	if err := writeAddrResult(c, c.Arg(1), c.Arg(2), encodeSockaddr(a, s.domain)); err != nil {
		answerErr(c, err)
		return
	}
	c.Return(0)
}

func nativeUint32(b []byte) uint32       { return binary.NativeEndian.Uint32(b) }
func putNativeUint32(b []byte, v uint32) { binary.NativeEndian.PutUint32(b, v) }

// shutdown answers shutdown(fd, how). A connection's is the kernel's, on
// the program's end (the relay passes it on); a socket with no connection
// has nothing to shut down (ENOTCONN); a listener shut down for reading
// stops listening, as Linux's does.
func (s *socket) shutdown(c *intercept.Call) {
	how := int(int32(c.Arg(1)))
	if how < unix.SHUT_RD || how > unix.SHUT_RDWR {
		c.Fail(unix.EINVAL)
		return
	}
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	switch st {
	case stateNew, stateFailed, stateClosed:
		c.Fail(unix.ENOTCONN)
	case stateListening:
		if how != unix.SHUT_WR {
			s.stopListening(c)
		}
		c.Return(0)
	default:
		c.Continue()
	}
}

// stopListening turns a listener back into a socket that is bound and
// not listening: connections not yet accepted are reset, new ones
// refused, blocked accepts fail with EINVAL, and the program may listen
// again on the same address.
func (s *socket) stopListening(c *intercept.Call) {
	nep, nwq, terr := s.m.newEndpoint(s.domain)
	if terr != nil {
		return
	}
	s.mu.Lock()
	if s.state != stateListening {
		s.mu.Unlock()
		nep.Close()
		return
	}
	ep, pending := s.ep, s.pending
	local, lerr := ep.GetLocalAddress()
	s.ep, s.wq, s.pending, s.state = nep, nwq, nil, stateNew
	close(s.room) // the accept loop waiting for room ends
	s.room = make(chan struct{})
	close(s.newToken) // parked accepts look again and fail
	s.newToken = make(chan struct{})
	s.mu.Unlock()
	ep.Close()
	for _, p := range pending {
		p.ep.Abort()
	}
	if lerr == nil {
		nep.Bind(unspecified(local)) // keeps its name, as Linux's does
	}
	// The tokens of connections that will never be accepted go too.
	if dup, err := c.GetFD(int(int32(c.Arg(0)))); err == nil {
		var b [64]byte
		for {
			if n, _, err := unix.Recvfrom(dup, b[:], unix.MSG_DONTWAIT); err != nil || n <= 0 {
				break
			}
		}
		unix.Close(dup)
	}
}
