// Package fdpoll watches many file descriptors for readiness with one
// epoll instance and one goroutine, so that a relay waiting for a kernel
// socket needs no goroutine of its own while it waits.
//
// A descriptor is registered with EPOLLONESHOT: each readiness is reported
// once, to the registration's callback, and the descriptor stays disarmed
// until its interest is armed again. The interest is not given to the
// poller as a value but asked of the registration (interest), under the
// registration's lock, every time the descriptor is armed: the several
// waiters of one descriptor (a relay reading it and another writing it)
// share one epoll registration, and the last arming always reflects what
// all of them wait for at that moment.
package fdpoll

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/nbio"
)

// Poller is one epoll instance and the goroutine that waits on it.
//
// The goroutine waits in Go's own poller, in which the epoll descriptor
// is registered like a socket (an epoll instance is readable while it has
// events), rather than in epoll_wait on a thread of its own: a thread
// blocked in a system call holds a P until the runtime's monitor takes it
// back, which keeps the monitor ticking every 20 µs and makes each event
// a wake-up of that thread. In Go's poller, an event is picked up by
// whichever thread is idle, and no thread stays blocked.
type Poller struct {
	epfd int
	file *os.File // epfd, in Go's poller; nil if it could not be made one
	wake int      // eventfd: Close writes it to end the loop
	done chan struct{}

	mu     sync.RWMutex // read-held while a registration uses epfd
	regs   map[uint64]*Reg
	next   uint64
	closed bool
}

// Reg is one registered descriptor.
type Reg struct {
	p  *Poller
	id uint64
	// control runs f on the descriptor while it cannot be closed (a
	// syscall.RawConn's Control), or fails if it has been.
	control  func(f func(fd uintptr)) error
	interest func() uint32
	onEvent  func(revents uint32)

	mu     sync.Mutex
	added  bool
	closed bool
}

// ErrClosed is returned by Rearm once the registration or the poller is
// closed.
var ErrClosed = errors.New("fdpoll: closed")

// New starts a poller.
func New() (*Poller, error) { return newPoller(true) }

// newPoller starts a poller that waits in Go's poller if inGo, else in
// epoll_wait on a thread of its own (the fallback, which tests use too).
func newPoller(inGo bool) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	// The eventfd's data is 0; registrations count from 1.
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	p := &Poller{epfd: epfd, wake: wake, done: make(chan struct{}), regs: map[uint64]*Reg{}}
	// os.NewFile registers a non-blocking descriptor in Go's poller.
	if inGo && unix.SetNonblock(epfd, true) == nil {
		p.file = os.NewFile(uintptr(epfd), "fdpoll")
	}
	go p.loop()
	return p, nil
}

// Close stops the loop and waits for it; registrations left are dropped.
func (p *Poller) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	var one [8]byte
	one[0] = 1
	unix.Write(p.wake, one[:])
	<-p.done
	unix.Close(p.wake)
	if p.file != nil {
		p.file.Close()
	} else {
		unix.Close(p.epfd)
	}
}

// Register adds a descriptor, reached through control (see Reg), whose
// wanted events interest reports (EPOLLIN, EPOLLOUT, EPOLLRDHUP; 0 for
// none) and whose readiness onEvent takes. onEvent runs on the poller's
// goroutine with the registration locked: it must not block, and must not
// call Rearm or Close. Nothing is armed until the first Rearm.
func (p *Poller) Register(control func(func(fd uintptr)) error, interest func() uint32, onEvent func(revents uint32)) (*Reg, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	p.next++
	r := &Reg{p: p, id: p.next, control: control, interest: interest, onEvent: onEvent}
	p.regs[r.id] = r
	return r, nil
}

// Rearm arms the descriptor for what interest reports now. Call it after
// a waiter has recorded what it waits for, then check once more whether
// the descriptor is ready (a readiness that came before the arming is
// reported by it anyway: epoll checks the level when armed). An error
// means the descriptor is closed: the waiter will not be woken through it.
func (r *Reg) Rearm() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rearmLocked()
}

func (r *Reg) rearmLocked() error {
	if r.closed {
		return ErrClosed
	}
	r.p.mu.RLock()
	defer r.p.mu.RUnlock()
	if r.p.closed {
		return ErrClosed
	}
	ev := r.interest()
	if ev == 0 {
		return nil
	}
	e := unix.EpollEvent{Events: ev | unix.EPOLLONESHOT, Fd: int32(uint32(r.id)), Pad: int32(uint32(r.id >> 32))}
	var err error
	cerr := r.control(func(fd uintptr) {
		op := unix.EPOLL_CTL_MOD
		if !r.added {
			op = unix.EPOLL_CTL_ADD
		}
		err = nbio.EpollCtl(r.p.epfd, op, int(fd), &e)
		if err == nil {
			r.added = true
		}
	})
	if cerr != nil {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// Close removes the registration. The descriptor itself is the caller's.
func (r *Reg) Close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.p.mu.RLock()
		if r.added && !r.p.closed {
			r.control(func(fd uintptr) { unix.EpollCtl(r.p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
		}
		r.p.mu.RUnlock()
	}
	r.mu.Unlock()
	r.p.mu.Lock()
	delete(r.p.regs, r.id)
	r.p.mu.Unlock()
}

// Len is the number of registrations (for tests).
func (p *Poller) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.regs)
}

func (p *Poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	wait := p.waitFunc()
	for {
		n, err := wait(events)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return // only a closed epoll fails; Close closes it after the loop ends
		}
		for _, e := range events[:n] {
			id := uint64(uint32(e.Fd)) | uint64(uint32(e.Pad))<<32
			if id == 0 {
				return // Close
			}
			p.mu.RLock()
			r := p.regs[id]
			p.mu.RUnlock()
			if r != nil {
				r.fire(e.Events)
			}
		}
	}
}

// waitFunc returns how the loop waits for events: in Go's poller when the
// epoll descriptor is in it, else (or once Go's poller has failed for it)
// blocked in epoll_wait.
func (p *Poller) waitFunc() func([]unix.EpollEvent) (int, error) {
	block := func(events []unix.EpollEvent) (int, error) {
		return unix.EpollWait(p.epfd, events, -1)
	}
	if p.file == nil {
		return block
	}
	rc, err := p.file.SyscallConn()
	if err != nil {
		return block
	}
	failed := false
	return func(events []unix.EpollEvent) (int, error) {
		if failed {
			return block(events)
		}
		var n int
		var werr error
		// Go's poller reports the descriptor once per change (edge
		// triggered): wait in it only when epoll_wait has found nothing.
		err := rc.Read(func(fd uintptr) bool {
			n, werr = nbio.EpollWait(int(fd), events)
			return n > 0 || werr != nil
		})
		if err != nil {
			failed = true
			return block(events)
		}
		return n, werr
	}
}

// fire hands a readiness to the registration, then arms it again for
// whoever still waits (the event disarmed it). A descriptor closed in
// between cannot be armed: its waiters are told, as by an error, so that
// they find out.
func (r *Reg) fire(revents uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.onEvent(revents)
	if err := r.rearmLocked(); err != nil {
		r.onEvent(unix.EPOLLERR | unix.EPOLLHUP)
	}
}
