package drill

import (
	"container/heap"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// virtualClock is the stack's clock in virtual time: it stands still until
// the runner moves it. Timers due are fired by the runner, one at a time,
// in the order of their deadlines and, for equal deadlines, of their
// setting, on the runner's goroutine; so a run fires the same timers in the
// same order every time. (gVisor's faketime.ManualClock fires timers of
// equal deadline in map order and all deadlines of an Advance in one go.)
type virtualClock struct {
	mu     sync.Mutex
	epoch  time.Time // what Now reports at offset 0
	now    time.Duration
	seq    uint64
	timers timerHeap
}

var _ tcpip.Clock = (*virtualClock)(nil)

func newVirtualClock() *virtualClock {
	// An arbitrary fixed wall time, so that runs are alike.
	return &virtualClock{epoch: time.Date(2013, 6, 26, 0, 0, 0, 0, time.UTC)}
}

// Now implements tcpip.Clock.
func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch.Add(c.now)
}

// NowMonotonic implements tcpip.Clock.
func (c *virtualClock) NowMonotonic() tcpip.MonotonicTime {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m tcpip.MonotonicTime
	// Offset from zero like a real monotonic clock, which is never 0.
	return m.Add(time.Hour + c.now)
}

// elapsed is the clock's offset from its start.
func (c *virtualClock) elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements tcpip.Clock. The function runs when the runner
// fires the timer, never by itself.
func (c *virtualClock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	t := &vtimer{c: c, f: f, index: -1}
	t.Reset(d)
	return t
}

// nextDeadline reports the earliest armed timer's deadline.
func (c *virtualClock) nextDeadline() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return 0, false
	}
	return c.timers[0].when, true
}

// setNow moves the clock to t (never back).
func (c *virtualClock) setNow(t time.Duration) {
	c.mu.Lock()
	if t > c.now {
		c.now = t
	}
	c.mu.Unlock()
}

// fireOne runs the earliest timer that is due, if any, and reports whether
// it ran one.
func (c *virtualClock) fireOne() bool {
	c.mu.Lock()
	if len(c.timers) == 0 || c.timers[0].when > c.now {
		c.mu.Unlock()
		return false
	}
	t := heap.Pop(&c.timers).(*vtimer)
	c.mu.Unlock()
	t.f()
	return true
}

type vtimer struct {
	c     *virtualClock
	f     func()
	when  time.Duration
	seq   uint64
	index int // in the heap, -1 when not armed
}

// Stop implements tcpip.Timer.
func (t *vtimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&c.timers, t.index)
	return true
}

// Reset implements tcpip.Timer.
func (t *vtimer) Reset(d time.Duration) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.index >= 0 {
		heap.Remove(&c.timers, t.index)
	}
	t.when = c.now + max(d, 0)
	c.seq++
	t.seq = c.seq
	heap.Push(&c.timers, t)
}

type timerHeap []*vtimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when != h[j].when {
		return h[i].when < h[j].when
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*vtimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}
