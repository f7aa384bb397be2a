// Package hrtimer gives timers that fire within tens of microseconds of
// their time, where Go's fire up to a millisecond late.
//
// A Go timer is late because of how an idle runtime sleeps: in
// epoll_pwait, whose timeout is in whole milliseconds, so a wake-up due in
// 300 µs comes after 1 ms. A link emulator that delays each packet by 25
// ms pays that on every hop (a round trip of 52.4 ms where the link says
// 50), however idle or real-time the process is. The kernel's timerfd has
// no such rounding: a thread blocked reading one wakes when it expires,
// to the microsecond on a loaded machine under SCHED_FIFO.
//
// Every timer of the process shares one timerfd and one OS thread, which
// keeps the timers in a heap and the timerfd armed for the earliest. A
// timer's function runs in a goroutine of its own, as with time.AfterFunc.
package hrtimer

import (
	"container/heap"
	"errors"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// Clock is the real clock with precise timers: tcpip.NewStdClock's time,
// and AfterFunc timers that fire through the timerfd.
type Clock struct {
	tcpip.Clock
}

// NewClock returns the real clock with precise timers.
func NewClock() *Clock { return &Clock{Clock: tcpip.NewStdClock()} }

// AfterFunc calls f in its own goroutine once d has passed, unless the
// timer is stopped first. Where the kernel has no timerfd it falls back to
// Go's timer.
func (c *Clock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	s, err := theService()
	if err != nil {
		return c.Clock.AfterFunc(d, f)
	}
	t := &Timer{s: s, f: f, index: -1}
	t.Reset(d)
	return t
}

// Timer is one precise timer. It implements tcpip.Timer.
type Timer struct {
	s     *service
	f     func()
	when  int64 // CLOCK_MONOTONIC nanoseconds
	index int   // in s.timers; -1 while not pending
}

// Stop keeps the timer from firing; it reports whether it was pending.
func (t *Timer) Stop() bool {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.s.timers, t.index)
	t.s.armLocked()
	return true
}

// Reset makes the timer fire d from now, whether it was pending, stopped
// or had fired.
func (t *Timer) Reset(d time.Duration) {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.when = monotonic() + max(int64(d), 0)
	if t.index >= 0 {
		heap.Fix(&t.s.timers, t.index)
	} else {
		heap.Push(&t.s.timers, t)
	}
	t.s.armLocked()
}

// service is the process's timerfd and the timers waiting on it.
type service struct {
	fd int

	mu     sync.Mutex
	timers timerHeap
	armed  int64 // the expiry the timerfd is set to; 0 when disarmed
}

var (
	once    sync.Once
	single  *service
	initErr error
)

func theService() (*service, error) {
	once.Do(func() {
		fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
		if err != nil {
			initErr = err
			return
		}
		single = &service{fd: fd}
		go single.loop()
	})
	return single, initErr
}

// armLocked sets the timerfd to the earliest pending timer, or disarms
// it. Setting it while the loop's thread is blocked reading moves that
// thread's wake-up.
func (s *service) armLocked() {
	var next int64
	if len(s.timers) > 0 {
		next = s.timers[0].when
	}
	if next == s.armed {
		return
	}
	s.armed = next
	var spec unix.ItimerSpec // zero disarms
	if next != 0 {
		spec.Value = unix.NsecToTimespec(next)
	}
	// Fails only on a bad descriptor or value, neither of which this
	// package makes.
	unix.TimerfdSettime(s.fd, unix.TFD_TIMER_ABSTIME, &spec, nil)
}

// loop waits on the timerfd on a thread of its own and starts the
// functions of the timers that are due.
func (s *service) loop() {
	runtime.LockOSThread()
	// The kernel may defer a normal thread's wake-up by its timer slack
	// (50 µs by default) to batch wake-ups; this thread wants none.
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	var buf [8]byte
	var due []func()
	for {
		if _, err := unix.Read(s.fd, buf[:]); err != nil && !errors.Is(err, unix.EINTR) {
			panic("hrtimer: reading the timerfd: " + err.Error()) // a descriptor this package owns and never closes
		}
		now := monotonic()
		s.mu.Lock()
		for len(s.timers) > 0 && s.timers[0].when <= now {
			due = append(due, heap.Pop(&s.timers).(*Timer).f)
		}
		s.armed = 0 // expired; rearm for what is left
		s.armLocked()
		s.mu.Unlock()
		for i, f := range due {
			go f()
			due[i] = nil
		}
		due = due[:0]
	}
}

func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// timerHeap orders pending timers by when they are due.
type timerHeap []*Timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when < h[j].when }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
