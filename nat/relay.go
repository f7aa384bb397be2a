package nat

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
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/internal/fdpoll"
	"github.com/ustack/ustack/internal/growstack"
	"github.com/ustack/ustack/internal/inline"
	"github.com/ustack/ustack/internal/nbio"
)

// tcpRelay copies both ways between a gateway endpoint (to the guest) and
// a host connection until both directions have ended. A FIN is passed on
// as a FIN (half-close); a reset or error on either side aborts both.
//
// It is driven by readiness, as the socket layer's relay is: a direction
// with nothing to move has no goroutine. It waits either for the endpoint
// (a waiter entry's callback, inline on netstack's goroutines) or for the
// host socket (the gateway's poller); whoever moves its state from waiting
// back to running starts the goroutine that carries it on, except that the
// callback for the guest's data posts up to package inline when it can:
// the goroutine whose call into netstack brought the data (the program's
// relay, writing into the guest's endpoint) then carries it on to the host
// socket once the call has returned. A wait is
// recorded first and the endpoint looked at once more, so that an event in
// between is not missed; epoll arms at the level, which does the same for
// the host socket.
type tcpRelay struct {
	g    *Gateway
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	host hostConn
	rc   syscall.RawConn
	reg  *fdpoll.Reg

	up   natDir // guest -> host
	down natDir // host -> guest

	left    atomic.Int32
	abortMu sync.Once
	upFIN   atomic.Bool  // the guest's FIN is passed on: all it sent is in the host socket
	reader  bytes.Reader // down's, for ep.Write

	epReadable, epWritable func() bool
	upInline               func() // runs up as posted work (made once)
}

// hostConn is the host side of a relay: an accepted *net.TCPConn (a
// published port) or a dialled socket's *os.File (dialHost).
type hostConn interface {
	SyscallConn() (syscall.RawConn, error)
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	Close() error
}

const (
	natRunning int32 = iota
	natWaitEp
	natWaitFd
	natDone
	natWaitEpHot // for the endpoint, its goroutine kept a while (hotLinger)
)

type natDir struct {
	state    atomic.Int32
	fdEvents uint32 // what natWaitFd waits for on the host socket
	entry    waiter.Entry
	run      func()
	// Data in hand, (*bufp)[off:n] still to write; the buffer is taken
	// only once the source has data and given back when it runs dry.
	bufp   *[]byte
	off, n int

	// For natWaitEpHot, made the first time.
	hotCh chan struct{}
	hotT  *time.Timer
}

// relay starts the relay between ep and host. Close (through track) aborts
// it; Close waits for it to end.
func (g *Gateway) relay(ep tcpip.Endpoint, wq *waiter.Queue, host hostConn) {
	r := &tcpRelay{g: g, ep: ep, wq: wq, host: host}
	rc, err := host.SyscallConn()
	var p *fdpoll.Poller
	if err == nil {
		p, err = g.poller()
	}
	if err == nil {
		r.rc = rc
		r.reg, err = p.Register(rc.Control, r.interest, r.fdEvent)
	}
	if err != nil {
		host.Close()
		ep.Close()
		return
	}
	if !g.trackRelay(r) {
		r.reg.Close()
		ep.Close()
		return
	}
	r.up.fdEvents = unix.EPOLLOUT
	r.down.fdEvents = unix.EPOLLIN | unix.EPOLLRDHUP
	r.up.run = func() { r.runUp(false) }
	r.upInline = func() { r.runUp(true) }
	r.down.run = r.runDown
	r.epReadable = func() bool { return ep.Readiness(waiter.ReadableEvents) != 0 }
	r.epWritable = func() bool { return ep.Readiness(waiter.WritableEvents) != 0 }
	r.up.entry = waiter.NewFunctionEntry(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr, func(waiter.EventMask) {
		r.wake(&r.up, natWaitEp)
	})
	r.down.entry = waiter.NewFunctionEntry(waiter.WritableEvents|waiter.EventHUp|waiter.EventErr, func(waiter.EventMask) {
		r.wake(&r.down, natWaitEp)
	})
	wq.EventRegister(&r.up.entry)
	wq.EventRegister(&r.down.entry)
	r.left.Store(2)
	go r.start(&r.up)
	go r.start(&r.down)
}

// Close ends the relay (Gateway.Close). A connection whose guest has
// finished sending is closed gracefully on the host, so that the kernel
// still delivers what the host socket holds; any other is aborted.
func (r *tcpRelay) Close() error {
	r.stop(r.upFIN.Load())
	return nil
}

// abort resets both sides: the host socket with an RST (as the guest saw),
// the endpoint with one.
func (r *tcpRelay) abort() { r.stop(false) }

// stop ends both sides, the host socket with a reset unless graceful.
func (r *tcpRelay) stop(graceful bool) {
	r.abortMu.Do(func() {
		if !graceful {
			// SO_LINGER 0: close sends a reset.
			r.rc.Control(func(fd uintptr) {
				unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
			})
		}
		r.host.Close()
		r.ep.Abort()
		// A closed descriptor is no longer polled: its waiters are told;
		// so are the endpoint's, whatever Abort notifies, as Close waits
		// for both directions to end.
		for _, d := range []*natDir{&r.up, &r.down} {
			r.wake(d, natWaitFd)
			r.wake(d, natWaitEp)
		}
	})
}

func (r *tcpRelay) wake(d *natDir, kind int32) {
	if kind == natWaitEp && d.state.CompareAndSwap(natWaitEpHot, natRunning) {
		d.hotCh <- struct{}{} // room for one: one wake per wait
		return
	}
	if d.state.CompareAndSwap(kind, natRunning) {
		if kind == natWaitEp && d == &r.up && inline.Post(r.upInline) {
			return
		}
		go r.start(d)
	}
}

// start runs d on a goroutine of its own (see growstack).
func (r *tcpRelay) start(d *natDir) {
	growstack.Grow()
	d.run()
}

func (r *tcpRelay) interest() uint32 {
	var ev uint32
	for _, d := range []*natDir{&r.up, &r.down} {
		if d.state.Load() == natWaitFd {
			ev |= d.fdEvents
		}
	}
	return ev
}

func (r *tcpRelay) fdEvent(revents uint32) {
	for _, d := range []*natDir{&r.up, &r.down} {
		if revents&(d.fdEvents|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			r.wake(d, natWaitFd)
		}
	}
}

// waitEp makes d wait for the endpoint unless ready, looked at once the
// wait is recorded, says the event has come; it reports whether the caller
// carries on.
func (r *tcpRelay) waitEp(d *natDir, ready func() bool) bool {
	d.state.Store(natWaitEp)
	return ready() && d.state.CompareAndSwap(natWaitEp, natRunning)
}

// waitEpHot is waitEp for a direction that has just moved data: its
// goroutine waits for the event for up to hotLinger before it leaves the
// wait to the callback.
func (r *tcpRelay) waitEpHot(d *natDir, ready func() bool) bool {
	if d.hotCh == nil {
		d.hotCh = make(chan struct{}, 1)
		d.hotT = time.NewTimer(hotLinger)
	} else {
		d.hotT.Reset(hotLinger)
	}
	d.state.Store(natWaitEpHot)
	if ready() && d.state.CompareAndSwap(natWaitEpHot, natRunning) {
		return true
	}
	select {
	case <-d.hotCh:
		return true
	case <-d.hotT.C:
		if d.state.CompareAndSwap(natWaitEpHot, natWaitEp) {
			return false // the callback starts a goroutine when the event comes
		}
		<-d.hotCh // the event came as the time ran out
		return true
	}
}

// waitFd makes d wait for the host socket.
func (r *tcpRelay) waitFd(d *natDir) bool {
	d.state.Store(natWaitFd)
	// A socket that cannot be armed is closed: the next step finds out.
	return r.reg.Rearm() != nil && d.state.CompareAndSwap(natWaitFd, natRunning)
}

// end finishes d; the last direction to end closes both sides.
func (r *tcpRelay) end(d *natDir) {
	putCopyBuf(d.bufp)
	d.bufp = nil
	d.state.Store(natDone)
	if d == &r.up {
		r.g.upEnded()
	}
	if r.left.Add(-1) == 0 {
		r.wq.EventUnregister(&r.up.entry)
		r.wq.EventUnregister(&r.down.entry)
		r.reg.Close()
		r.host.Close()
		r.ep.Close()
		r.g.untrackRelay(r)
	}
}

// emptyReceiveQueue reports whether ep holds no data for a read.
func emptyReceiveQueue(ep tcpip.Endpoint) bool {
	n, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
	return err == nil && n == 0
}

func putCopyBuf(bufp *[]byte) {
	if bufp != nil {
		copyBufs.Put(bufp)
	}
}

// runUp copies from the guest's endpoint to the host socket. Run as posted
// work (package inline), it never waits on the goroutine it borrowed.
func (r *tcpRelay) runUp(posted bool) {
	d, ep := &r.up, r.ep
	hot := false // data moved since the last wait: wait for the host socket in Go's poller first
	for {
		if d.off < d.n {
			var werr error
			write := func(fd uintptr) {
				werr = nil
				for d.off < d.n {
					m, err := nbio.Write(int(fd), (*d.bufp)[d.off:d.n])
					if err != nil {
						werr = err
						return
					}
					d.off += m
				}
			}
			var cerr error
			if hot {
				r.host.SetWriteDeadline(time.Now().Add(hotLinger))
				cerr = r.rc.Write(func(fd uintptr) bool { write(fd); return werr != unix.EAGAIN })
				if errors.Is(cerr, os.ErrDeadlineExceeded) {
					cerr, werr, hot = nil, unix.EAGAIN, false
				}
			} else {
				cerr = r.rc.Control(write)
			}
			switch {
			case cerr != nil, werr != nil && werr != unix.EAGAIN:
				r.abort()
				r.end(d)
				return
			case werr == unix.EAGAIN:
				if !r.waitFd(d) {
					return
				}
			default:
				hot = !posted
			}
			continue
		}
		// The wait for data is the callback's, always: it posts this
		// direction to the goroutine that brought the data when there is
		// one (see wake), and starts a goroutine when not.
		if d.bufp == nil && !r.epReadable() {
			if !r.waitEp(d, r.epReadable) {
				return
			}
			continue
		}
		// Readable with nothing queued is the guest's FIN or an error: no
		// buffer is taken to learn which.
		var one [1]byte
		dst := one[:]
		if d.bufp != nil || !emptyReceiveQueue(ep) {
			if d.bufp == nil {
				d.bufp = copyBufs.Get().(*[]byte)
			}
			dst = *d.bufp
		}
		sw := tcpip.SliceWriter(dst)
		res, terr := ep.Read(&sw, tcpip.ReadOptions{})
		if terr == nil && d.bufp == nil { // data came in between
			d.bufp = copyBufs.Get().(*[]byte)
			copy(*d.bufp, one[:res.Count])
		}
		switch terr.(type) {
		case nil:
			d.off, d.n = 0, res.Count
		case *tcpip.ErrWouldBlock:
			// Drained: the wait above.
			putCopyBuf(d.bufp)
			d.bufp = nil
		case *tcpip.ErrClosedForReceive:
			r.rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_WR) }) // the guest's FIN
			r.upFIN.Store(true)
			r.end(d)
			return
		default:
			r.abort()
			r.end(d)
			return
		}
	}
}

// writeDown writes what d holds to the guest's endpoint, as much as it
// takes.
func (r *tcpRelay) writeDown(d *natDir) tcpip.Error {
	r.reader.Reset((*d.bufp)[d.off:d.n])
	scope := d.n-d.off <= inline.MaxChunk
	if scope {
		inline.Begin() // the program's relay's work this write makes ready
	}
	m, err := r.ep.Write(&r.reader, tcpip.WriteOptions{})
	if scope {
		inline.End()
	}
	d.off += int(m)
	return err
}

// runDown copies from the host socket to the guest's endpoint.
func (r *tcpRelay) runDown() {
	d, ep := &r.down, r.ep
	hot := false // data moved since the last wait: wait in Go's poller first
	for {
		if d.off < d.n {
			switch err := r.writeDown(d); err.(type) {
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
				r.abort()
				r.end(d)
				return
			}
			continue
		}
		var n int
		var rerr error
		empty, moved := false, false
		read := func(fd uintptr) {
			empty, rerr = false, nil
			if d.bufp == nil {
				pn, perr := nbio.Peek(int(fd))
				switch {
				case perr == unix.EAGAIN:
					empty = true
					return
				case perr == nil && pn == 0:
					return // end of file: no buffer needed to see it
				}
				d.bufp = copyBufs.Get().(*[]byte)
			}
			n, rerr = nbio.Read(int(fd), *d.bufp)
		}
		var cerr error
		if hot {
			// The data is written to the endpoint here, in the poller's
			// read, so that a short read, which drained the socket, goes
			// straight back to waiting instead of reading once more to
			// see EAGAIN: an arrival since the read is not lost, as the
			// poller's readiness is reset only as Read starts.
			r.host.SetReadDeadline(time.Now().Add(hotLinger))
			cerr = r.rc.Read(func(fd uintptr) bool {
				for {
					read(fd)
					if empty || rerr == unix.EAGAIN {
						return false
					}
					if rerr != nil || n == 0 {
						return true
					}
					moved = true
					d.off, d.n = 0, n
					r.writeDown(d)
					if d.off < d.n {
						return true // the endpoint is full: the wait above
					}
					if n < len(*d.bufp) {
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
		case empty || cerr == nil && rerr == unix.EAGAIN:
			putCopyBuf(d.bufp)
			d.bufp = nil
			if !r.waitFd(d) {
				return
			}
		case moved && cerr == nil && rerr == nil && n > 0:
			// Written in the read above, all but what the endpoint had
			// no room for.
		case cerr != nil, rerr != nil:
			r.abort()
			r.end(d)
			return
		case n == 0:
			ep.Shutdown(tcpip.ShutdownWrite) // the host's FIN
			r.end(d)
			return
		default:
			d.off, d.n = 0, n
			hot = true
		}
	}
}

// hotLinger is how long a direction that has just moved data waits for
// its next chunk in Go's poller, keeping its goroutine, before it hands
// the wait to the gateway's poller: a stream's chunks follow each other
// closely, and going through the shared poller for each (an epoll_ctl, a
// wake of its thread, a new goroutine) costs throughput.
const hotLinger = 20 * time.Millisecond
