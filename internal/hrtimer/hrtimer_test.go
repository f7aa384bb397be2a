package hrtimer

import (
	"slices"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// fired records when each timer's function ran.
type fired struct {
	mu    sync.Mutex
	order []int
	at    map[int]time.Time
	ch    chan int
}

func newFired() *fired { return &fired{at: map[int]time.Time{}, ch: make(chan int, 100)} }

func (f *fired) fn(i int) func() {
	return func() {
		f.mu.Lock()
		f.order = append(f.order, i)
		f.at[i] = time.Now()
		f.mu.Unlock()
		f.ch <- i
	}
}

func TestFiresNotBeforeItsTime(t *testing.T) {
	c := NewClock()
	f := newFired()
	for i, d := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		start := time.Now()
		c.AfterFunc(d, f.fn(i))
		<-f.ch
		if got := f.at[i].Sub(start); got < d {
			t.Errorf("a timer of %v fired after %v", d, got)
		}
	}
}

// TestMany: timers set in reverse order of their times all fire, none
// before its time, so the heap gives the timerfd the earliest each time.
func TestMany(t *testing.T) {
	c := NewClock()
	f := newFired()
	const n = 50
	due := func(i int) time.Duration { return time.Millisecond + time.Duration(i)*200*time.Microsecond }
	start := time.Now()
	for i := n - 1; i >= 0; i-- {
		c.AfterFunc(due(i), f.fn(i))
	}
	for range n {
		<-f.ch
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range n {
		if got := f.at[i].Sub(start); got < due(i) {
			t.Errorf("timer %d, due after %v, fired after %v", i, due(i), got)
		}
	}
}

func TestStopAndReset(t *testing.T) {
	c := NewClock()
	f := newFired()
	stopped := c.AfterFunc(10*time.Millisecond, f.fn(1))
	if !stopped.Stop() {
		t.Error("Stop of a pending timer reported it was not pending")
	}
	if stopped.Stop() {
		t.Error("a second Stop reported the timer pending")
	}
	// A later timer fires; the stopped one must not have by then.
	later := c.AfterFunc(time.Hour, f.fn(2))
	start := time.Now()
	later.Reset(30 * time.Millisecond) // brought forward
	if i := <-f.ch; i != 2 {
		t.Fatalf("timer %d fired; the one stopped was 1", i)
	}
	if got := time.Since(start); got < 30*time.Millisecond {
		t.Errorf("a timer reset to 30ms fired after %v", got)
	}
	if later.Stop() {
		t.Error("Stop after the timer fired reported it pending")
	}
	// Reset after firing arms it again; pushed back, it fires at the new time.
	start = time.Now()
	later.Reset(time.Millisecond)
	later.Reset(15 * time.Millisecond)
	if i := <-f.ch; i != 2 {
		t.Fatalf("timer %d fired", i)
	}
	if got := time.Since(start); got < 15*time.Millisecond {
		t.Errorf("a timer reset to 1ms and then 15ms fired after %v", got)
	}
	select {
	case i := <-f.ch:
		t.Errorf("timer %d fired again", i)
	default:
	}
}

// BenchmarkLateness reports how late timers of 1 to 5 ms fire, for this
// package's timers and for Go's (ns/op is not the measure).
func BenchmarkLateness(b *testing.B) {
	for _, bc := range []struct {
		name  string
		clock tcpip.Clock
	}{{"hrtimer", NewClock()}, {"go", tcpip.NewStdClock()}} {
		b.Run(bc.name, func(b *testing.B) {
			var late []time.Duration
			ch := make(chan time.Time, 1)
			for i := 0; i < b.N; i++ {
				d := time.Millisecond + time.Duration(i%50)*83*time.Microsecond
				start := time.Now()
				bc.clock.AfterFunc(d, func() { ch <- time.Now() })
				late = append(late, (<-ch).Sub(start)-d)
			}
			slices.Sort(late)
			b.ReportMetric(float64(late[len(late)/2].Microseconds()), "µs-late-p50")
			b.ReportMetric(float64(late[len(late)*99/100].Microseconds()), "µs-late-p99")
		})
	}
}
