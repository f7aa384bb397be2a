package sockets

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/internal/nbio"
)

// Datagram sockets (UDP, and ICMP echo "ping" sockets) give the program one
// end of an AF_UNIX SOCK_SEQPACKET pair, which keeps datagram boundaries:
// read, write, send and recv without addresses, poll and epoll stay native.
// Two pumps join our end to the netstack endpoint. What the program writes
// natively goes to the connected peer; calls that carry addresses
// (sendto/recvfrom with one, sendmsg, recvmsg and their mmsg forms) are
// answered here. A datagram's source address cannot travel through the
// pair, so the pump that queues a datagram for the program records where it
// came from, and a trapped receive takes the datagram from the program's
// end itself and pairs it with that record.

// maxDatagram is the largest datagram a socket carries: UDP's 16-bit length.
const maxDatagram = 65535

// dgram is the datagram state of a socket.
type dgram struct {
	done chan struct{} // closed when the socket is released

	// mu orders what is queued in the program's end against the record
	// of where each datagram came from.
	mu     sync.Mutex
	from   []fromEntry
	queued int // bytes of the datagrams in from

	pendingErr atomic.Int32 // an error netstack reported (an ICMP port unreachable…), for the next receive

	// waiter is a trapped receive waiting for a datagram (one at a time):
	// the pump hands it the next datagram itself, when nothing it queued
	// in the program's end may still be there (the order stays the
	// network's), instead of queueing it there for the call to take back
	// out. Under mu.
	waiter *recvWaiter

	// Datagrams the program wrote natively that could not be sent (no
	// destination on an unconnected socket, unreachable…): a native write
	// cannot be answered with an error.
	unsent   atomic.Uint64
	unsentOK sync.Once // logged once per socket
}

// recvWaiter is a receive waiting for the pump. ch gets one value: a
// datagram, or nil when the pump queued one in the program's end instead.
type recvWaiter struct {
	max int
	ch  chan *received
}

// handOff gives the datagram data, from res, to the waiting receive if
// there is one and nothing of ours may be queued ahead of it in the
// program's end; or, if one waits but must look in the end, tells it to.
// d.mu is held; handOff reports whether the datagram was taken.
func (d *dgram) handOff(data []byte, from tcpip.FullAddress, cm tcpip.ReceivableControlMessages) bool {
	w := d.waiter
	if w == nil {
		return false
	}
	d.waiter = nil
	if len(d.from) > 0 {
		w.ch <- nil
		return false
	}
	bp := datagramBufs.Get().(*[]byte)
	n := copy(*bp, data) // all of it, should it have to be queued after all
	w.ch <- &received{data: (*bp)[:min(n, w.max)], size: n, from: from, cm: cm, buf: bp}
	return true
}

type fromEntry struct {
	addr tcpip.FullAddress
	n    int
	cm   tcpip.ReceivableControlMessages // what controlMessages may report
}

// dgramSocket answers socket() for UDP and ICMP echo sockets. Anyone may
// open a ping socket on the user-level stack (Linux asks for
// net.ipv4.ping_group_range).
func (m *Manager) dgramSocket(c *intercept.Call, domain int, proto tcpip.TransportProtocolNumber, nonblock, cloexec bool) {
	wq := new(waiter.Queue)
	ep, terr := m.ns.NewEndpoint(proto, netProto(domain), wq)
	if terr != nil {
		c.Fail(errnoOf(terr))
		return
	}
	if domain == unix.AF_INET6 {
		ep.SocketOptions().SetV6Only(false) // net.ipv6.bindv6only=0
	}
	// What a control message may report is recorded for every datagram,
	// as Linux keeps it with each: a program that asks for IP_PKTINFO
	// later still gets it for datagrams already queued.
	so := ep.SocketOptions()
	so.SetReceivePacketInfo(true)
	so.SetReceiveTTL(true)
	so.SetReceiveTOS(true)
	if domain == unix.AF_INET6 {
		so.SetIPv6ReceivePacketInfo(true)
		so.SetReceiveHopLimit(true)
		so.SetReceiveTClass(true)
	}
	s, theirs, err := m.newSocket(domain, proto, ep, wq, nonblock, stateNew)
	if err != nil {
		ep.Close()
		answerErr(c, err)
		return
	}
	if !s.inject(c, theirs, cloexec) {
		return
	}
	a := m.activity()
	a.begin()
	go func() {
		defer a.end()
		s.pumpToNetwork(a.newWait(0, "datagram pump to the network"))
	}()
	a.begin()
	go func() {
		defer a.end()
		s.pumpToProgram(a.newWait(0, "datagram pump to the program"))
	}()
}

// handleDgram answers the calls on a datagram socket.
func (s *socket) handleDgram(c *intercept.Call) {
	switch c.Nr() {
	case unix.SYS_CONNECT:
		s.dgramConnect(c)
	case unix.SYS_BIND:
		s.bind(c)
	case unix.SYS_LISTEN, unix.SYS_ACCEPT, unix.SYS_ACCEPT4:
		c.Fail(unix.EOPNOTSUPP)
	case unix.SYS_GETSOCKNAME:
		s.getsockname(c)
	case unix.SYS_GETPEERNAME:
		s.getpeername(c)
	case unix.SYS_SETSOCKOPT:
		s.setsockopt(c)
	case unix.SYS_GETSOCKOPT:
		s.getsockopt(c)
	case unix.SYS_SENDTO:
		s.sendto(c)
	case unix.SYS_SENDMSG:
		s.sendmsg(c)
	case unix.SYS_SENDMMSG:
		s.sendmmsg(c)
	case unix.SYS_RECVFROM:
		s.recvfrom(c)
	case unix.SYS_RECVMSG:
		s.recvmsg(c)
	case unix.SYS_RECVMMSG:
		s.recvmmsg(c)
	case unix.SYS_IOCTL:
		s.fionread(c)
	case unix.SYS_SHUTDOWN:
		// The program's end is always connected; the socket may not be.
		s.mu.Lock()
		connected := s.state == stateConnected
		s.mu.Unlock()
		if how := int32(c.Arg(1)); how >= unix.SHUT_RD && how <= unix.SHUT_RDWR && !connected {
			c.Fail(unix.ENOTCONN)
			return
		}
		c.Continue()
	default:
		c.Continue()
	}
}

// dgramConnect answers connect() on a datagram socket: it sets the default
// peer, or with AF_UNSPEC dissolves it.
func (s *socket) dgramConnect(c *intercept.Call) {
	b, err := readAddrArg(c, c.Arg(1), int(int32(c.Arg(2))))
	if err != nil {
		answerErr(c, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(b) >= 2 && binary.NativeEndian.Uint16(b) == unix.AF_UNSPEC {
		s.ep.Disconnect()
		s.state = stateNew
		c.Return(0)
		return
	}
	addr, en := decodeSockaddr(b, s.domain)
	if en != 0 {
		c.Fail(en)
		return
	}
	if terr := s.ep.Connect(s.redirected(addr)); terr != nil {
		c.Fail(errnoOf(terr))
		return
	}
	s.state = stateConnected
	c.Return(0)
}

// pumpToNetwork sends what the program writes natively, one datagram per
// message, to the connected peer; it releases the socket when the program
// has closed its end.
func (s *socket) pumpToNetwork(w *waitPoint) {
	buf := make([]byte, 256<<10) // more than any datagram, so that none is cut short unseen
	rc, err := s.conn.SyscallConn()
	if err != nil {
		s.close()
		return
	}
	ready := func() bool { return s.ourEndHas(unix.POLLIN | unix.POLLRDHUP) }
	for {
		// The raw read lets the activity bookkeeping see the wait exactly.
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			w.unpark()
			n, rerr = nbio.Read(int(fd), buf)
			if rerr == unix.EAGAIN {
				w.park(ready)
				return false
			}
			return true
		})
		w.unpark()
		if err == nil {
			err = rerr
		}
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err != nil && !errors.Is(err, io.EOF) {
			s.close()
			return
		}
		if n == 0 && err != nil { // end of file, or an empty datagram, which reads the same
			switch hup, rdhup := s.peerShutdown(); {
			case hup:
				s.close()
				return
			case rdhup:
				// shutdown(SHUT_WR) on the program's end: nothing more
				// will come from it; release the socket once it is closed.
				s.waitProgramClosed(w)
				return
			}
		}
		var en unix.Errno
		if n > maxDatagram {
			en = unix.EMSGSIZE
		} else {
			_, en = s.send(nil, buf[:n], nil, tcpip.SendableControlMessages{}, false)
		}
		if en != 0 {
			s.dg.unsent.Add(1)
			s.dg.unsentOK.Do(func() {
				s.m.logf("a datagram written without an address could not be sent: %v (later ones are counted)", en)
			})
		}
	}
}

// peerShutdown polls our end: hup when the program has closed its end,
// rdhup when it only shut it down for writing.
func (s *socket) peerShutdown() (hup, rdhup bool) {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return true, true
	}
	rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			hup = p[0].Revents&unix.POLLHUP != 0
			rdhup = p[0].Revents&unix.POLLRDHUP != 0
		}
	})
	return hup, rdhup
}

// waitProgramClosed releases the socket when the program closes its end.
func (s *socket) waitProgramClosed(w *waitPoint) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		w.park(func() bool { return isClosed(s.dg.done) })
		select {
		case <-s.dg.done:
			w.unpark()
			return
		case <-t.C:
		}
		w.unpark()
		if hup, _ := s.peerShutdown(); hup {
			s.close()
			return
		}
	}
}

// pumpToProgram queues each datagram netstack receives in the program's
// end, recording where it came from. A full program end holds the pump
// back, and netstack then drops and counts, as Linux does when a socket's
// receive buffer is full.
func (s *socket) pumpToProgram(w *waitPoint) {
	entry, notify := notifyEntry(w, waiter.ReadableEvents|waiter.EventErr)
	s.wq.EventRegister(&entry)
	defer s.wq.EventUnregister(&entry)
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return
	}
	var b bytes.Buffer
	for {
		b.Reset()
		res, terr := s.ep.Read(&b, tcpip.ReadOptions{NeedRemoteAddr: true})
		switch terr.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			w.parkNotified(func() bool { return len(notify) > 0 || isClosed(s.dg.done) })
			select {
			case <-notify:
			case <-s.dg.done:
				w.unpark()
				return
			}
			w.unpark()
			continue
		case *tcpip.ErrClosedForReceive, *tcpip.ErrInvalidEndpointState:
			return
		default:
			// An error from the network (ICMP port unreachable on a
			// connected socket…): the next trapped receive reports it.
			s.dg.pendingErr.Store(int32(errnoOf(terr)))
			s.dg.mu.Lock()
			if rw := s.dg.waiter; rw != nil {
				s.dg.waiter = nil
				rw.ch <- nil // a waiting receive reports it now
			}
			s.dg.mu.Unlock()
			continue
		}
		data := b.Bytes()
		var werr error
		if err := rc.Write(func(fd uintptr) bool {
			w.unpark()
			s.dg.mu.Lock()
			defer s.dg.mu.Unlock()
			if s.dg.handOff(data, s.original(res.RemoteAddr), res.ControlMessages) {
				return true
			}
			_, werr = nbio.Write(int(fd), data)
			if werr == unix.EAGAIN {
				w.park(func() bool { return s.ourEndHas(unix.POLLOUT) })
				return false // wait until the program has read some
			}
			if werr == nil {
				s.dg.from = append(s.dg.from, fromEntry{addr: s.original(res.RemoteAddr), n: len(data), cm: res.ControlMessages})
				s.dg.queued += len(data)
			}
			return true
		}); err != nil || werr != nil {
			w.unpark()
			return // our end is closed: the socket is being released
		}
		w.unpark()
	}
}

// send hands one datagram to netstack, to the given address or the
// connected peer. With c set it may wait for room in netstack's send
// buffer on behalf of the caller; without, it waits until the socket is
// released. nonblock gives EAGAIN instead of waiting.
func (s *socket) send(c *intercept.Call, payload []byte, to *tcpip.FullAddress, cm tcpip.SendableControlMessages, nonblock bool) (int, unix.Errno) {
	var r bytes.Reader
	var w *waitPoint
	if c != nil {
		w = s.callWait(c)
	} else {
		w = s.m.activity().newWait(0, "datagram send")
	}
	entry, notify := notifyEntry(w, waiter.WritableEvents)
	s.wq.EventRegister(&entry) // before the write, so no wake-up is missed
	defer s.wq.EventUnregister(&entry)
	ready := func() bool { return len(notify) > 0 || isClosed(s.dg.done) }
	for {
		r.Reset(payload)
		n, terr := s.ep.Write(&r, tcpip.WriteOptions{To: to, ControlMessages: cm})
		if _, wouldBlock := terr.(*tcpip.ErrWouldBlock); !wouldBlock {
			if terr != nil {
				return 0, errnoOf(terr)
			}
			return int(n), 0
		}
		if nonblock {
			return 0, unix.EAGAIN
		}
		if c == nil {
			w.parkNotified(ready)
			select {
			case <-notify:
			case <-s.dg.done:
				w.unpark()
				return 0, unix.EBADF
			}
			w.unpark()
			continue
		}
		if err := s.park(w, c, notify, ready); err != nil {
			return 0, unix.EINTR
		}
	}
}

// received is one datagram taken from the program's end.
type received struct {
	data []byte // as much as fits the caller's buffer
	size int    // the datagram's full size
	from tcpip.FullAddress
	cm   tcpip.ReceivableControlMessages
	buf  *[]byte // data's buffer, from datagramBufs
}

// datagramBufs keeps receive buffers of the largest datagram's size: a
// trapped receive would otherwise allocate (and the collector clear and
// scan) 64 KiB per call.
var datagramBufs = sync.Pool{New: func() any {
	b := make([]byte, maxDatagram)
	return &b
}}

// free gives r's buffer back once its data has been copied out.
func (r *received) free() {
	if r.buf != nil {
		datagramBufs.Put(r.buf)
		r.buf, r.data = nil, nil
	}
}

// tryRecv takes (or with MSG_PEEK, looks at) the next datagram queued in
// the program's end, through dup, a copy of the program's fd. EAGAIN when
// there is none.
func (s *socket) tryRecv(dup, max, flags int) (received, error) {
	s.dg.mu.Lock()
	defer s.dg.mu.Unlock()
	return s.tryRecvLocked(dup, max, flags)
}

// tryRecvLocked is tryRecv with s.dg.mu held.
func (s *socket) tryRecvLocked(dup, max, flags int) (received, error) {
	if en := s.dg.pendingErr.Swap(0); en != 0 && flags&unix.MSG_PEEK == 0 {
		return received{}, unix.Errno(en)
	}
	d := s.dg
	d.reconcile(dup)
	bp := datagramBufs.Get().(*[]byte)
	buf := (*bp)[:min(max, maxDatagram)]
	n, err := nbio.Recv(dup, buf, flags&unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
	if err != nil {
		datagramBufs.Put(bp)
		return received{}, err
	}
	r := received{data: buf[:min(n, len(buf))], size: n, buf: bp}
	if len(d.from) > 0 {
		r.from, r.cm = d.from[0].addr, d.from[0].cm
		if flags&unix.MSG_PEEK == 0 {
			d.queued -= d.from[0].n
			d.from = d.from[1:]
		}
	}
	return r, nil
}

// reconcile drops the records of datagrams the program has read natively
// (without asking where they came from): the program's end holds fewer
// bytes than the records account for. d.mu is held.
func (d *dgram) reconcile(dup int) {
	if len(d.from) == 0 {
		return
	}
	q, err := nbio.IoctlGetInt(dup, unix.SIOCINQ)
	if err != nil {
		return
	}
	for d.queued > q && len(d.from) > 0 {
		d.queued -= d.from[0].n
		d.from = d.from[1:]
	}
}

// recvWait is tryRecv for a caller that waits: until a datagram arrives,
// its SO_RCVTIMEO passes (EAGAIN), or it stops waiting (ErrGone).
func (s *socket) recvWait(c *intercept.Call, dup, max, flags int, deadline time.Time) (received, error) {
	if flags&unix.MSG_PEEK == 0 && s.m.activity() == nil {
		return s.recvHandedOff(c, dup, max, flags, deadline)
	}
	return s.recvPolled(c, dup, max, flags, deadline)
}

// recvPolled is recvWait by polling the program's end.
func (s *socket) recvPolled(c *intercept.Call, dup, max, flags int, deadline time.Time) (received, error) {
	w := s.callWait(c)
	for {
		r, err := s.tryRecv(dup, max, flags)
		if err != unix.EAGAIN {
			return r, err
		}
		wait := 100 * time.Millisecond
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return received{}, unix.EAGAIN
			}
			wait = min(wait, left)
		}
		p := []unix.PollFd{{Fd: int32(dup), Events: unix.POLLIN}}
		w.park(func() bool { return pollNow(uintptr(dup), unix.POLLIN) || isClosed(s.dg.done) })
		unix.Poll(p, int(wait/time.Millisecond)+1)
		w.unpark()
		select {
		case <-c.Context().Done():
			return received{}, intercept.ErrGone
		case <-s.dg.done:
			return received{}, unix.EBADF
		default:
		}
		if !c.Valid() {
			return received{}, intercept.ErrGone
		}
	}
}

// recvHandedOff is recvWait by the pump's hand-off: the call waits for the
// pump to give it the next datagram (one goroutine wake-up), rather than
// for the datagram to be written into the program's end and read back out
// (a write, a poll's wake-up and two more system calls). Not for MSG_PEEK,
// which must leave the datagram queued, nor under the activity
// bookkeeping, whose waits are the program's end's.
func (s *socket) recvHandedOff(c *intercept.Call, dup, max, flags int, deadline time.Time) (received, error) {
	d := s.dg
	rw := &recvWaiter{max: max, ch: make(chan *received, 1)}
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	check := time.NewTicker(200 * time.Millisecond)
	defer check.Stop()
	for {
		// Look in the program's end and wait as one step under d.mu,
		// which the pump holds to queue a datagram there: none is missed.
		d.mu.Lock()
		r, err := s.tryRecvLocked(dup, max, flags)
		if err != unix.EAGAIN {
			d.mu.Unlock()
			return r, err
		}
		if d.waiter != nil && d.waiter != rw {
			// Another receive waits already: this one looks in the end.
			d.mu.Unlock()
			return s.recvPolled(c, dup, max, flags, deadline)
		}
		d.waiter = rw
		d.mu.Unlock()
		got, fail := s.awaitHandOff(c, rw, timeout, check.C)
		if fail == nil {
			if got != nil {
				return *got, nil
			}
			continue // queued in the end: take it from there
		}
		if got := s.stopWaiting(rw, fail == unix.EAGAIN && c.Valid()); got != nil {
			return *got, nil
		}
		return received{}, fail
	}
}

// awaitHandOff waits for rw's value from the pump (a datagram, or nil: look
// in the end), or fails: the deadline passed (EAGAIN), the caller is gone,
// the socket was released (EBADF). The pump clears d.waiter as it gives
// the value, so the caller registers rw again before waiting again.
func (s *socket) awaitHandOff(c *intercept.Call, rw *recvWaiter, timeout <-chan time.Time, check <-chan time.Time) (*received, error) {
	for {
		select {
		case got := <-rw.ch:
			return got, nil
		case <-timeout:
			return nil, unix.EAGAIN
		case <-c.Context().Done():
			return nil, intercept.ErrGone
		case <-s.dg.done:
			return nil, unix.EBADF
		case <-check:
			if !c.Valid() {
				return nil, intercept.ErrGone
			}
		}
	}
}

// stopWaiting unregisters rw. A datagram the pump handed over meanwhile is
// the next one the program gets: returned if take, else put into the
// program's end (where the pump would have put it) in the same step, so
// ahead of any later one.
func (s *socket) stopWaiting(rw *recvWaiter, take bool) *received {
	d := s.dg
	var got *received
	withEnd := func(fd int) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.waiter == rw {
			d.waiter = nil
		}
		select {
		case got = <-rw.ch:
		default:
		}
		if got == nil || take || fd < 0 {
			return
		}
		// Our end is non-blocking; a program that has not read for so
		// long that it is full loses the datagram, as a full socket does.
		if _, err := nbio.Write(fd, (*got.buf)[:got.size]); err == nil {
			d.from = append(d.from, fromEntry{addr: got.from, n: got.size, cm: got.cm})
			d.queued += got.size
		}
	}
	rc, err := s.conn.SyscallConn()
	if err != nil || rc.Control(func(fd uintptr) { withEnd(int(fd)) }) != nil {
		withEnd(-1) // our end is closed: the socket is being released
	}
	if got != nil && !take {
		got.free()
		return nil
	}
	return got
}

// blocking reports whether a call with these flags on dup waits, and until
// when (SO_RCVTIMEO, zero for ever).
func blocking(dup, flags int) (bool, time.Time) {
	if flags&unix.MSG_DONTWAIT != 0 {
		return false, time.Time{}
	}
	fl, err := nbio.FcntlInt(dup, unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK != 0 {
		return false, time.Time{}
	}
	var deadline time.Time
	if tv, err := nbio.GetsockoptTimeval(dup, unix.SOL_SOCKET, unix.SO_RCVTIMEO); err == nil && (tv.Sec != 0 || tv.Usec != 0) {
		deadline = time.Now().Add(time.Duration(tv.Nano()))
	}
	return true, deadline
}

// recvThen takes one datagram for call c on fd and passes it to answer. If
// none is queued and the call blocks, the wait goes on in a goroutine of its
// own (the notification loop must not wait).
func (s *socket) recvThen(c *intercept.Call, fd, max, flags int, answer func(*intercept.Call, received, error)) {
	dup, err := c.GetFD(fd)
	if err != nil {
		answerErr(c, err)
		return
	}
	r, err := s.tryRecv(dup, max, flags)
	if err == unix.EAGAIN {
		if block, deadline := blocking(dup, flags); block {
			a := s.m.activity()
			a.begin()
			c.Park(func(c *intercept.Call) {
				defer a.end()
				r, err := s.recvWait(c, dup, max, flags, deadline)
				nbio.Close(dup)
				answer(c, r, err)
				r.free()
			})
			return
		}
	}
	nbio.Close(dup)
	answer(c, r, err)
	r.free()
}

// recvResult is what a receive call returns: the full size with MSG_TRUNC,
// else what was copied.
func recvResult(r received, flags int) int64 {
	if flags&unix.MSG_TRUNC != 0 {
		return int64(r.size)
	}
	return int64(len(r.data))
}

// recvfrom answers recvfrom(fd, buf, len, flags, addr, addrlen) (only the
// calls with an address reach here).
func (s *socket) recvfrom(c *intercept.Call) {
	fd, bufPtr, length, flags := int(int32(c.Arg(0))), c.Arg(1), int(c.Arg(2)), int(int32(c.Arg(3)))
	addrPtr, lenPtr := c.Arg(4), c.Arg(5)
	if length < 0 {
		length = maxDatagram // a size_t beyond int: more than any datagram
	}
	s.recvThen(c, fd, length, flags, func(c *intercept.Call, r received, err error) {
		if err != nil {
			answerRecvErr(c, err)
			return
		}
		if err := writeAddrResult(c, addrPtr, lenPtr, encodeSockaddr(r.from, s.domain), intercept.MemWrite{Addr: bufPtr, Buf: r.data}); err != nil {
			answerErr(c, err)
			return
		}
		c.Return(recvResult(r, flags))
	})
}

// answerRecvErr answers a receive that failed; one whose caller went away
// needs no answer (the call is marked answered all the same).
func answerRecvErr(c *intercept.Call, err error) {
	if errors.Is(err, intercept.ErrGone) {
		c.Fail(unix.EINTR)
		return
	}
	answerErr(c, err)
}

// sendto answers sendto(fd, buf, len, flags, addr, addrlen) (only the
// calls with an address reach here).
func (s *socket) sendto(c *intercept.Call) {
	var addr []byte
	if c.Arg(4) != 0 {
		addrLen := int(int32(c.Arg(5)))
		if addrLen < 0 || addrLen > sizeofSockaddrStor {
			c.Fail(unix.EINVAL)
			return
		}
		addr = make([]byte, addrLen)
	}
	length := int(c.Arg(2))
	var bad unix.Errno
	switch {
	case length < 0 || length > maxDatagram:
		bad = unix.EMSGSIZE
	case int32(c.Arg(3))&unix.MSG_OOB != 0:
		bad = unix.EOPNOTSUPP // no out-of-band data on datagram sockets
	}
	var payload []byte
	if bad == 0 {
		payload = make([]byte, length)
	}
	// The address and the data in one read, their errors in Linux's
	// order: an unreadable address, a bad length or flag, an address
	// that is no destination, unreadable data.
	n, err := c.ReadMems(intercept.MemRead{Addr: c.Arg(4), Buf: addr}, intercept.MemRead{Addr: c.Arg(1), Buf: payload})
	if err != nil && (errors.Is(err, intercept.ErrGone) || n < len(addr)) {
		answerErr(c, err)
		return
	}
	if bad != 0 {
		c.Fail(bad)
		return
	}
	var to *tcpip.FullAddress
	var en unix.Errno
	if addr != nil {
		// Even one of no length, which is no address (EINVAL); only
		// sendmsg takes a name of length 0 for the connected peer.
		to, en = s.decodeDestination(addr)
	}
	if en != 0 {
		c.Fail(en)
		return
	}
	if err != nil {
		answerErr(c, err)
		return
	}
	s.sendThen(c, int(int32(c.Arg(3))), func(c *intercept.Call, nonblock bool) (int64, unix.Errno) {
		n, en := s.send(c, payload, to, tcpip.SendableControlMessages{}, nonblock)
		return int64(n), en
	})
}

// destination reads a send's address: none for a null pointer or zero
// length (the connected peer).
func (s *socket) destination(c *intercept.Call, ptr uint64, length int) (*tcpip.FullAddress, unix.Errno) {
	if ptr == 0 || length == 0 {
		return nil, 0
	}
	b, err := readAddrArg(c, ptr, length)
	if err != nil {
		var en unix.Errno
		if errors.As(err, &en) {
			return nil, en
		}
		return nil, unix.EFAULT
	}
	return s.decodeDestination(b)
}

// decodeDestination is destination for an address already read.
func (s *socket) decodeDestination(b []byte) (*tcpip.FullAddress, unix.Errno) {
	a, en := decodeSockaddr(b, s.domain)
	if en != 0 {
		return nil, en
	}
	if a.Port == 0 && s.proto == udp.ProtocolNumber {
		return nil, unix.EINVAL // no UDP datagram goes to port 0
	}
	a = s.redirected(a)
	return &a, 0
}

// sendThen runs do without waiting; if it would block and the caller's
// socket blocks, it runs again in a goroutine of its own that may wait.
func (s *socket) sendThen(c *intercept.Call, flags int, do func(c *intercept.Call, nonblock bool) (int64, unix.Errno)) {
	n, en := do(c, true)
	if en == unix.EAGAIN && flags&unix.MSG_DONTWAIT == 0 {
		if fl, err := fdFlags(c); err == nil && fl&unix.O_NONBLOCK == 0 {
			a := s.m.activity()
			a.begin()
			c.Park(func(c *intercept.Call) {
				defer a.end()
				n, en := do(c, false)
				answerCount(c, n, en)
			})
			return
		}
	}
	answerCount(c, n, en)
}

func answerCount(c *intercept.Call, n int64, en unix.Errno) {
	if en != 0 {
		c.Fail(en)
		return
	}
	c.Return(n)
}

// fionread answers ioctl(fd, FIONREAD): the size of the next datagram, as
// UDP reports it, not the bytes of all of them.
func (s *socket) fionread(c *intercept.Call) {
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		answerErr(c, err)
		return
	}
	n, _, _, _, err := unix.Recvmsg(dup, nil, nil, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
	unix.Close(dup)
	if err != nil {
		n = 0
	}
	var b [4]byte
	putNativeUint32(b[:], uint32(n))
	if err := c.WriteMem(c.Arg(2), b[:]); err != nil {
		answerErr(c, err)
		return
	}
	c.Return(0)
}

// DatagramsUnsent counts the datagrams programs wrote natively (without an
// address) that could not be sent, on sockets still open.
func (m *Manager) DatagramsUnsent() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for _, s := range m.socks {
		if s.dg != nil {
			n += s.dg.unsent.Load()
		}
	}
	return n
}
