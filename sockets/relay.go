package sockets

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/internal/fdpoll"
	"github.com/ustack/ustack/internal/growstack"
	"github.com/ustack/ustack/internal/inline"
	"github.com/ustack/ustack/internal/nbio"
)

// The relay of a connected TCP socket copies between our end of the
// program's socketpair and the netstack endpoint, both ways. It is driven
// by readiness: a direction with nothing to move has no goroutine. It waits
// in one of three ways, recorded in its state, and whoever ends the wait
// (and only the one who moves the state back to running) starts a
// goroutine that carries the direction on until it has to wait again:
//
//   - for the endpoint (data to read, room to write, a reset): a waiter
//     entry's callback, which runs inline on netstack's goroutines; for
//     data to read it posts the direction to package inline when it can,
//     so that the goroutine whose call into netstack brought the data
//     carries it on into our end once the call has returned;
//   - for our end (data from the program, room for it): the manager's
//     poller, one epoll instance and goroutine for all sockets;
//   - for the other direction to end (a reset waits until nothing more is
//     read from the program): that direction, as it ends.
//
// A wait is recorded first, then the condition looked at once more, so
// that what happened in between is not missed; epoll arms at the level, so
// a descriptor ready when armed is reported at once.
//
// The activity bookkeeping sees each direction as one goroutine: running,
// or parked at its wait point until the wait is ended.

const (
	dirRunning  int32 = iota
	dirWaitEp         // for an event of the endpoint
	dirWaitFd         // for our end, through the poller
	dirWaitPeer       // for the other direction to end
	dirDone
	dirWaitEpHot // for an event of the endpoint, its goroutine kept a while (hotLinger)
)

type relayDir struct {
	state    atomic.Int32
	fdEvents uint32 // what dirWaitFd waits for (EPOLLIN…), fixed
	w        *waitPoint
	ready    func() bool // for w: whether the wait would end now
	entry    waiter.Entry
	run      func()

	// Data in hand: buf[off:n] is still to be written. buf is taken
	// only once the source has data and given back when it runs dry.
	buf    []byte
	off, n int

	// For dirWaitEpHot, made the first time.
	hotCh chan struct{}
	hotT  *time.Timer
}

// Phases of the network -> program direction.
const (
	progRead      = iota // read the endpoint
	progWrite            // write buf into our end
	progCloseWait        // the peer's FIN is passed on; watch for a reset
	progReset            // the connection was reset: pass it on
)

type relay struct {
	s   *socket
	ep  tcpip.Endpoint
	wq  *waiter.Queue
	rc  syscall.RawConn
	reg *fdpoll.Reg

	net  relayDir // program -> network
	prog relayDir // network -> program

	phase    int         // of prog; only its running goroutine touches it
	netDone  atomic.Bool // the program -> network direction has ended
	left     atomic.Int32
	reader   bytes.Reader // net's, for ep.Write
	resetRan bool         // prog's: the reset's first step is done

	// What the waits for the endpoint look at once recorded (made once,
	// not at every wait).
	epWritable, epReadable, closeWaitOver func() bool

	// hotOK: directions may wait in Go's poller for a while after moving
	// data (see hotLinger), and prog may run on a goroutine that posted
	// work finds (package inline); off when the activity is tracked, whose
	// runners want every wait to be one they can see the end of.
	hotOK bool
	// progInline runs prog as posted work (made once, not at every post).
	progInline func()
}

// startRelay starts the relay between our end and ep; when both
// directions have ended it releases the socket.
func (s *socket) startRelay(ep tcpip.Endpoint, wq *waiter.Queue) {
	r := &relay{s: s, ep: ep, wq: wq}
	rc, err := s.conn.SyscallConn()
	var p *fdpoll.Poller
	if err == nil {
		p, err = s.m.poller()
	}
	if err == nil {
		r.rc = rc
		r.reg, err = p.Register(rc.Control, r.interest, r.fdEvent)
	}
	if err != nil {
		s.m.logf("relay: %v", err)
		ep.Close()
		s.close()
		return
	}
	a := s.m.activity()
	r.hotOK = a == nil
	r.net.fdEvents = unix.EPOLLIN | unix.EPOLLRDHUP
	r.prog.fdEvents = unix.EPOLLOUT
	r.net.run = r.runNet
	r.prog.run = func() { r.runProg(false) }
	r.progInline = func() { r.runProg(true) }
	if a != nil {
		r.net.w = a.newWait(0, "relay to the network")
		r.prog.w = a.newWait(0, "relay to the program")
		r.net.ready = r.readyFunc(&r.net, unix.POLLIN|unix.POLLRDHUP)
		r.prog.ready = r.readyFunc(&r.prog, unix.POLLOUT)
	}
	// HUp and Err too: the end of the connection ends any wait (a reset
	// in CLOSE-WAIT is seen only through them).
	r.net.entry = waiter.NewFunctionEntry(waiter.WritableEvents|waiter.EventHUp|waiter.EventErr, func(waiter.EventMask) {
		r.wake(&r.net, dirWaitEp)
	})
	r.prog.entry = waiter.NewFunctionEntry(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr, func(waiter.EventMask) {
		r.wake(&r.prog, dirWaitEp)
	})
	wq.EventRegister(&r.net.entry)
	wq.EventRegister(&r.prog.entry)
	r.epWritable = func() bool { return ep.Readiness(waiter.WritableEvents) != 0 }
	r.epReadable = func() bool { return ep.Readiness(waiter.ReadableEvents) != 0 }
	r.closeWaitOver = func() bool {
		return r.netDone.Load() || tcp.EndpointState(ep.State()) != tcp.StateCloseWait
	}
	r.left.Store(2)
	s.rl.Store(r)
	a.begin()
	go r.start(&r.net)
	a.begin()
	go r.start(&r.prog)
}

// readyFunc is d's ready function for the activity bookkeeping: a wait
// someone has ended is ready, and so is a wait for our end that the poller
// has not reported yet.
func (r *relay) readyFunc(d *relayDir, events int16) func() bool {
	return func() bool {
		switch d.state.Load() {
		case dirWaitEp, dirWaitPeer:
			return false
		case dirWaitFd:
			return d == &r.net && r.s.resetting.Load() || r.s.ourEndHas(events)
		}
		return true
	}
}

// wake ends d's wait if it is one of kind, and starts its goroutine.
func (r *relay) wake(d *relayDir, kind int32) {
	if kind == dirWaitEp && d.state.CompareAndSwap(dirWaitEpHot, dirRunning) {
		d.hotCh <- struct{}{} // room for one: one wake per wait
		return
	}
	if d.state.CompareAndSwap(kind, dirRunning) {
		if kind == dirWaitEp && d == &r.prog && r.hotOK && inline.Post(r.progInline) {
			return
		}
		go r.resume(d)
	}
}

// start runs d on a goroutine of its own (see growstack).
func (r *relay) start(d *relayDir) {
	growstack.Grow()
	d.run()
}

func (r *relay) resume(d *relayDir) {
	d.w.unpark()
	r.start(d)
}

// interest is what the directions wait for on our end (for the poller).
func (r *relay) interest() uint32 {
	var ev uint32
	for _, d := range []*relayDir{&r.net, &r.prog} {
		if d.state.Load() == dirWaitFd {
			ev |= d.fdEvents
		}
	}
	return ev
}

// fdEvent takes a readiness of our end from the poller.
func (r *relay) fdEvent(revents uint32) {
	for _, d := range []*relayDir{&r.net, &r.prog} {
		if revents&(d.fdEvents|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			r.wake(d, dirWaitFd)
		}
	}
}

// kickFd ends the waits for our end: it has been closed (a closed
// descriptor is no longer polled), or the reader must stop.
func (r *relay) kickFd() {
	r.wake(&r.net, dirWaitFd)
	r.wake(&r.prog, dirWaitFd)
}

// waitEp makes d wait for an event of the endpoint, unless ready (looked
// at once the wait is recorded) says it has come. It reports whether the
// caller carries on; if not, the caller returns and the callback takes
// over.
func (r *relay) waitEp(d *relayDir, ready func() bool) bool {
	return r.waitFor(d, dirWaitEp, ready)
}

// waitEpHot is waitEp for a direction that has just moved data: its
// goroutine waits for the event for up to hotLinger before it leaves the
// wait to the callback.
func (r *relay) waitEpHot(d *relayDir, ready func() bool) bool {
	if d.hotCh == nil {
		d.hotCh = make(chan struct{}, 1)
		d.hotT = time.NewTimer(hotLinger)
	} else {
		d.hotT.Reset(hotLinger)
	}
	d.state.Store(dirWaitEpHot)
	if ready() && d.state.CompareAndSwap(dirWaitEpHot, dirRunning) {
		return true
	}
	select {
	case <-d.hotCh:
		return true
	case <-d.hotT.C:
		if d.state.CompareAndSwap(dirWaitEpHot, dirWaitEp) {
			return false // the callback starts a goroutine when the event comes
		}
		<-d.hotCh // the event came as the time ran out
		return true
	}
}

// waitPeer makes prog wait for net to end.
func (r *relay) waitPeer(d *relayDir) bool {
	return r.waitFor(d, dirWaitPeer, r.netDone.Load)
}

func (r *relay) waitFor(d *relayDir, kind int32, ready func() bool) bool {
	d.w.park(d.ready)
	d.state.Store(kind)
	if ready() && d.state.CompareAndSwap(kind, dirRunning) {
		d.w.unpark()
		return true
	}
	return false
}

// waitFd makes d wait for our end through the poller.
func (r *relay) waitFd(d *relayDir) bool {
	d.w.park(d.ready)
	d.state.Store(dirWaitFd)
	err := r.reg.Rearm()
	// A closed end (or manager) cannot be polled, and a reset that began
	// while net was reading stops it: the next step finds out.
	if (err != nil || d == &r.net && r.s.resetting.Load()) && d.state.CompareAndSwap(dirWaitFd, dirRunning) {
		d.w.unpark()
		return true
	}
	return false
}

// end finishes d; the last direction to end releases the socket.
func (r *relay) end(d *relayDir) {
	putRelayBuf(d.buf)
	d.buf = nil
	d.state.Store(dirDone)
	if d == &r.net {
		r.netDone.Store(true)
		// prog may wait for it (a reset), or watch for a reset while it
		// is there (CLOSE-WAIT).
		r.wake(&r.prog, dirWaitPeer)
		r.wake(&r.prog, dirWaitEp)
	}
	if r.left.Add(-1) == 0 {
		r.wq.EventUnregister(&r.net.entry)
		r.wq.EventUnregister(&r.prog.entry)
		r.reg.Close()
		r.ep.Close()
		r.s.close()
	}
	r.s.m.activity().end()
}

// relayBufSize is what one read of a relay moves at most.
const relayBufSize = 64 << 10

// relayBufs are the relays' buffers, shared: a relay takes one when data
// is there to move and gives it back when the source runs dry.
var relayBufs = sync.Pool{New: func() any { return new([relayBufSize]byte) }}

func getRelayBuf() []byte { return relayBufs.Get().(*[relayBufSize]byte)[:] }

// putRelayBuf gives b back; nil is ignored.
func putRelayBuf(b []byte) {
	if b != nil {
		relayBufs.Put((*[relayBufSize]byte)(b))
	}
}

// runNet copies what the program writes to the endpoint until the program
// shuts its end down (FIN) or closes it, or a reset stops it.
func (r *relay) runNet() {
	d, s, ep := &r.net, r.s, r.ep
	hot := false // data moved since the last wait: wait in Go's poller first
	for {
		if d.off < d.n {
			switch err := r.writeNet(d); err.(type) {
			case nil:
			case *tcpip.ErrWouldBlock:
				if hot {
					if !r.waitEpHot(d, r.epWritable) {
						return
					}
				} else if !r.waitEp(d, r.epWritable) {
					return
				}
			default:
				s.closeConn()
				r.end(d)
				return
			}
			continue
		}
		if s.resetting.Load() {
			// The reset needs what the program writes from now on left
			// unread in our end.
			ep.Close()
			r.end(d)
			return
		}
		var n int
		var rerr error
		empty, moved, stopped := false, false, false
		read := func(fd uintptr) {
			empty, rerr = false, nil
			if d.buf == nil {
				pn, perr := nbio.Peek(int(fd))
				switch {
				case perr == unix.EAGAIN:
					empty = true
					return
				case perr == nil && pn == 0:
					return // end of file: no buffer needed to see it
				case perr == unix.ECONNRESET:
					rerr = perr // reported once: the read after it sees end of file
					return
				}
				d.buf = getRelayBuf()
			}
			n, rerr = nbio.Read(int(fd), d.buf)
		}
		var cerr error
		if hot {
			// The data is written to the endpoint in the poller's read, so
			// that a short read, which drained our end, goes straight back
			// to waiting instead of reading once more to see EAGAIN: an
			// arrival since the read is not lost, as the poller's
			// readiness is reset only as the read starts.
			cerr = r.hotRead(func(fd uintptr) bool {
				for {
					if s.resetting.Load() {
						stopped = true // see the top of the loop
						return true
					}
					read(fd)
					if empty || rerr == unix.EAGAIN {
						return false
					}
					if rerr != nil || n == 0 {
						return true
					}
					moved = true
					d.off, d.n = 0, n
					r.writeNet(d)
					if d.off < d.n {
						return true // the endpoint is full: the wait above
					}
					if n < len(d.buf) {
						return false
					}
				}
			})
			if errors.Is(cerr, os.ErrDeadlineExceeded) {
				cerr, empty, hot = nil, true, false
			}
		} else {
			cerr = r.rc.Control(read)
		}
		switch {
		case cerr != nil:
			ep.Close() // our end is closed
			r.end(d)
			return
		case empty || rerr == unix.EAGAIN:
			putRelayBuf(d.buf)
			d.buf = nil
			if !r.waitFd(d) {
				return
			}
		case stopped, moved && rerr == nil && n > 0:
			// A reset stopped the reading; or the data was written in
			// the read above, all but what the endpoint had no room for.
		case rerr == unix.ECONNRESET:
			// The program closed its socket with data it had not read:
			// the kernel tells our end so with ECONNRESET (an AF_UNIX
			// socket released with a non-empty receive queue), and Linux
			// answers such a close with a reset, not a FIN (RFC 2525).
			ep.Abort()
			r.end(d)
			return
		case rerr != nil:
			ep.Close()
			r.end(d)
			return
		case n == 0:
			if !s.programClosed() {
				ep.Shutdown(tcpip.ShutdownWrite) // shutdown(SHUT_WR) by the program: send FIN, keep reading
			} else {
				ep.Close() // the program closed the socket
			}
			r.end(d)
			return
		default:
			d.off, d.n = 0, n
			hot = r.hotOK
		}
	}
}

// hotLinger is how long a direction that has just moved data waits for
// its next chunk in Go's poller, keeping its goroutine, before it hands
// the wait to the manager's poller. A stream's chunks follow each other
// closely; going through the shared poller for each (an epoll_ctl, a wake
// of its thread, a new goroutine) costs throughput, while a connection
// that goes idle is left without a goroutine this much later.
const hotLinger = 20 * time.Millisecond

// hotRead runs read on our end in Go's poller until it reports true, for
// at most hotLinger (then os.ErrDeadlineExceeded). A reset stops it with a
// deadline in the past.
func (r *relay) hotRead(read func(fd uintptr) bool) error {
	r.s.conn.SetReadDeadline(time.Now().Add(hotLinger))
	if r.s.resetting.Load() {
		return os.ErrDeadlineExceeded
	}
	return r.rc.Read(read)
}

// writeNet writes what d holds to the endpoint, as much as it takes.
func (r *relay) writeNet(d *relayDir) tcpip.Error {
	r.reader.Reset(d.buf[d.off:d.n])
	scope := r.hotOK && d.n-d.off <= inline.MaxChunk
	if scope {
		inline.Begin() // prog's and the gateway's work this write makes ready
	}
	m, err := r.ep.Write(&r.reader, tcpip.WriteOptions{})
	d.off += int(m)
	r.s.appWritten.Add(uint64(m)) // before the work runs: it may let the program look (TCP_INFO)
	if scope {
		inline.End()
	}
	return err
}

// hotWrite is hotRead for writing our end.
func (r *relay) hotWrite(write func(fd uintptr), blocked func() bool) error {
	r.s.conn.SetWriteDeadline(time.Now().Add(hotLinger))
	return r.rc.Write(func(fd uintptr) bool {
		write(fd)
		return !blocked()
	})
}

// runProg copies what the endpoint receives into our end until the peer
// ends the connection, then passes on its FIN or its reset. Run as posted
// work (package inline), it never waits on the goroutine it borrowed.
func (r *relay) runProg(posted bool) {
	d, s, ep := &r.prog, r.s, r.ep
	readable := r.epReadable
	hot := false // data moved since the last wait: wait for our end in Go's poller first
	for {
		switch r.phase {
		case progRead:
			// The wait for data is the callback's, always: it posts this
			// direction to the goroutine that brought the data when there
			// is one (see wake), and starts a goroutine when not.
			if d.buf == nil && !readable() {
				if !r.waitEp(d, readable) {
					return
				}
				continue
			}
			// Readable with nothing queued is the peer's FIN or an error:
			// no buffer is taken to learn which (at the end of many
			// connections at once, that would be one each).
			var one [1]byte
			dst := one[:]
			if d.buf != nil || !emptyReceiveQueue(ep) {
				if d.buf == nil {
					d.buf = getRelayBuf()
				}
				dst = d.buf
			}
			sw := tcpip.SliceWriter(dst)
			res, terr := ep.Read(&sw, tcpip.ReadOptions{})
			if terr == nil && d.buf == nil { // data came in between
				d.buf = getRelayBuf()
				copy(d.buf, one[:res.Count])
			}
			switch terr.(type) {
			case nil:
				ep.ModerateRecvBuf(res.Count)
				s.appRead.Add(uint64(res.Count))
				d.off, d.n = 0, res.Count
				r.phase = progWrite
			case *tcpip.ErrWouldBlock:
				// Drained: the wait above.
				putRelayBuf(d.buf)
				d.buf = nil
			case *tcpip.ErrClosedForReceive:
				putRelayBuf(d.buf)
				d.buf = nil
				r.rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_WR) }) // FIN from the peer: EOF for the program
				r.phase = progCloseWait
			default:
				putRelayBuf(d.buf)
				d.buf = nil
				r.phase = progReset // reset or aborted
			}
		case progWrite:
			var werr error
			write := func(fd uintptr) {
				werr = nil
				for d.off < d.n {
					m, err := nbio.Write(int(fd), d.buf[d.off:d.n])
					if err != nil {
						werr = err
						return
					}
					d.off += m
				}
			}
			var cerr error
			if hot {
				cerr = r.hotWrite(write, func() bool { return werr == unix.EAGAIN })
				if errors.Is(cerr, os.ErrDeadlineExceeded) {
					cerr, werr, hot = nil, unix.EAGAIN, false
				}
			} else {
				cerr = r.rc.Control(write)
			}
			switch {
			case cerr != nil, werr != nil && werr != unix.EAGAIN:
				ep.Close() // the program is gone
				r.end(d)
				return
			case werr == unix.EAGAIN:
				if !r.waitFd(d) { // until the program has read some
					return
				}
			default:
				r.phase = progRead
				hot = r.hotOK && !posted
			}
		case progCloseWait:
			// The peer has closed and the program not: if the peer then
			// resets the connection (the program wrote on), our end is
			// closed, and the program's next write fails with EPIPE, as
			// Linux reports a reset in CLOSE_WAIT.
			switch tcp.EndpointState(ep.State()) {
			case tcp.StateError, tcp.StateClose: // netstack closes on a reset in CLOSE-WAIT
				s.closeConn()
				r.end(d)
				return
			case tcp.StateCloseWait:
			default:
				r.end(d) // closed by us, or on its way out
				return
			}
			if r.netDone.Load() {
				r.end(d)
				return
			}
			if !r.waitEp(d, r.closeWaitOver) {
				return
			}
		case progReset:
			if !r.resetRan {
				r.resetRan = true
				s.resetting.Store(true)
				s.conn.SetReadDeadline(time.Unix(1, 0)) // stops the program -> network copy
				r.kickFd()
			}
			if !r.netDone.Load() {
				if !r.waitPeer(d) {
					return
				}
				continue
			}
			s.passReset()
			r.end(d)
			return
		}
	}
}

// emptyReceiveQueue reports whether ep holds no data for a read.
func emptyReceiveQueue(ep tcpip.Endpoint) bool {
	n, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
	return err == nil && n == 0
}

// passReset ends a connection the network reset: the program's next read
// or write fails with ECONNRESET, as on Linux, instead of seeing end of
// file. An AF_UNIX socket closed with unread data in its queue does
// exactly that to its peer, so one byte is sent into our end from the
// program's (a copy of its fd), our reader stopped first so that it stays
// unread, and our end closed. If the program's fd cannot be found (it was
// moved with dup2 and closed, or its thread is gone), the program sees end
// of file.
func (s *socket) passReset() {
	s.mu.Lock()
	tid, fd := s.ownerTid, s.ownerFD
	s.mu.Unlock()
	if tid != 0 && !s.programClosed() {
		if tgid, err := intercept.Tgid(tid); err == nil {
			if dup, err := intercept.TakeFD(tgid, fd); err == nil {
				var st unix.Stat_t
				if unix.Fstat(dup, &st) == nil && st.Ino == s.ino {
					unix.SendmsgN(dup, []byte{0}, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
				}
				unix.Close(dup)
			}
		}
	}
	s.closeConn()
}
