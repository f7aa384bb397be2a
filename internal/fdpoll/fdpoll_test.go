package fdpoll

import (
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns our end of an AF_UNIX stream pair, in Go's poller as the
// relays' are, and the other end's raw fd.
func pair(t *testing.T) (*net.UnixConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "ours")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); unix.Close(fds[1]) })
	return c.(*net.UnixConn), fds[1]
}

// watcher registers c and reports each event on a channel.
type watcher struct {
	want   atomic.Uint32
	events chan uint32
	reg    *Reg
}

func watch(t *testing.T, p *Poller, c *net.UnixConn) *watcher {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{events: make(chan uint32, 16)}
	w.reg, err = p.Register(rc.Control, w.want.Load, func(ev uint32) {
		w.want.Store(0) // the waiter is woken: it no longer waits
		w.events <- ev
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *watcher) arm(t *testing.T, ev uint32) {
	t.Helper()
	w.want.Store(ev)
	if err := w.reg.Rearm(); err != nil {
		t.Fatal(err)
	}
}

func (w *watcher) next(t *testing.T) uint32 {
	t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return 0
	}
}

// none checks that no event is pending; events are delivered by the
// poller's goroutine, so a round trip through it (another registration's
// event) shows that an earlier one would have come.
func (w *watcher) none(t *testing.T, p *Poller) {
	t.Helper()
	c, _ := pair(t)
	probe := watch(t, p, c)
	probe.arm(t, unix.EPOLLOUT) // writable at once
	probe.next(t)
	probe.reg.Close()
	select {
	case ev := <-w.events:
		t.Fatalf("unexpected event %#x", ev)
	default:
	}
}

// modes runs f with a poller of each kind: waiting in Go's poller (what New
// makes), in epoll_wait on its own thread, and in Go's poller until that
// fails (a read deadline in the past makes its wait fail at once).
func modes(t *testing.T, f func(t *testing.T, p *Poller)) {
	for _, m := range []struct {
		name         string
		inGo, failGo bool
	}{
		{"go-poller", true, false},
		{"own-thread", false, false},
		{"go-poller-failing", true, true},
	} {
		t.Run(m.name, func(t *testing.T) {
			p, err := newPoller(m.inGo)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if (p.file != nil) != m.inGo {
				t.Fatalf("in Go's poller: %v, want %v", p.file != nil, m.inGo)
			}
			if m.failGo {
				p.file.SetReadDeadline(time.Unix(1, 0))
			}
			f(t, p)
		})
	}
}

func TestOneShotAndLevel(t *testing.T) { modes(t, oneShotAndLevel) }

func oneShotAndLevel(t *testing.T, p *Poller) {
	c, theirs := pair(t)
	w := watch(t, p, c)

	// Nothing to read: no event until the other end writes.
	w.arm(t, unix.EPOLLIN)
	w.none(t, p)
	unix.Write(theirs, []byte("x"))
	if ev := w.next(t); ev&unix.EPOLLIN == 0 {
		t.Fatalf("event %#x, want EPOLLIN", ev)
	}
	// Disarmed by the event: more data reports nothing.
	unix.Write(theirs, []byte("y"))
	w.none(t, p)
	// Armed again while data waits: reported at once.
	w.arm(t, unix.EPOLLIN)
	if ev := w.next(t); ev&unix.EPOLLIN == 0 {
		t.Fatalf("event %#x, want EPOLLIN", ev)
	}
	// The other end closed: a waiter for room hears it.
	unix.Shutdown(theirs, unix.SHUT_RDWR)
	w.arm(t, unix.EPOLLIN|unix.EPOLLRDHUP)
	if ev := w.next(t); ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) == 0 {
		t.Fatalf("event %#x, want EPOLLRDHUP or EPOLLHUP", ev)
	}
	w.reg.Close()
	if n := p.Len(); n != 0 {
		t.Fatalf("%d registrations left", n)
	}
}

// A registration whose descriptor is closed cannot be armed.
func TestRearmClosed(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, _ := pair(t)
	w := watch(t, p, c)
	w.arm(t, unix.EPOLLIN)
	c.Close()
	w.want.Store(unix.EPOLLIN)
	if err := w.reg.Rearm(); err == nil {
		t.Fatal("Rearm of a closed descriptor succeeded")
	}
	w.reg.Close()
	p.Close()
	if _, err := p.Register(nil, nil, nil); err != ErrClosed {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
}

// More descriptors ready at once than one epoll_wait returns (128) are
// all reported: Go's poller tells of the epoll instance only when it
// becomes ready, so the loop must drain it before waiting there again.
func TestManyReadyAtOnce(t *testing.T) { modes(t, manyReadyAtOnce) }

func manyReadyAtOnce(t *testing.T, p *Poller) {
	const n = 300
	// The first registration's event holds the poller's goroutine until
	// all the others are ready and armed, so that they are ready at once.
	gate, held := make(chan struct{}), make(chan struct{})
	c, theirs := pair(t)
	unix.Write(theirs, []byte("x"))
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fired atomic.Bool
	first, err := p.Register(rc.Control, func() uint32 {
		if fired.Load() {
			return 0
		}
		return unix.EPOLLIN
	}, func(uint32) {
		fired.Store(true)
		close(held)
		<-gate
	})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.Rearm()
	<-held
	ws := make([]*watcher, n)
	for i := range ws {
		c, theirs := pair(t)
		unix.Write(theirs, []byte("x"))
		ws[i] = watch(t, p, c)
		ws[i].arm(t, unix.EPOLLIN)
	}
	close(gate)
	for _, w := range ws {
		if ev := w.next(t); ev&unix.EPOLLIN == 0 {
			t.Fatalf("event %#x, want EPOLLIN", ev)
		}
	}
}
