package sockets

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Activity bookkeeping, for runners that move the stack's clock themselves
// (ustack drill's virtual time). Such a runner must know when everything a
// step set off has happened before it moves time on or decides that an
// expected packet will not come. The socket layer's part of that is its own
// goroutines: the relays, accept loops, connect completions and the calls
// it holds for the program. Each of them is either running or parked at one
// wait point, and every wait point knows what would end it (data in a
// kernel buffer, a netstack notification, a closed channel). The layer is
// quiet when none runs and no wait point is ready to end: then only
// something from outside (a packet, a timer, a program's call) can make it
// move.
//
// The bookkeeping is off unless TrackActivity is called; all of it is a
// no-op on a nil *activity.
type activity struct {
	mu      sync.Mutex
	running int
	parked  map[*waitPoint]struct{}
	changed chan struct{} // closed and replaced at every transition
}

// waitPoint is where one goroutine parks, repeatedly. Only that goroutine
// parks and unparks it.
type waitPoint struct {
	a *activity
	// tid is the program thread whose call is held here, 0 for the
	// layer's own goroutines.
	tid  int
	what string // for reports
	// ready reports whether the current wait would end now; set by park
	// under a.mu.
	ready    func() bool
	notified bool // the current wait is for the notifications counted in pending
	isParked bool // under a.mu
	// pending counts notifications the goroutine has not yet taken in: a
	// waker adds one before it wakes the goroutine, which clears them only
	// once it counts as running again, so no instant shows it parked with
	// nothing to wake it while it is in fact waking.
	pending atomic.Int32
}

func newActivity() *activity {
	return &activity{parked: map[*waitPoint]struct{}{}, changed: make(chan struct{})}
}

// begin counts a goroutine about to start (call it before the go
// statement, so that no instant misses it).
func (a *activity) begin() {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.running++
	a.signalLocked()
	a.mu.Unlock()
}

// end counts a goroutine that has finished.
func (a *activity) end() {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.running--
	a.signalLocked()
	a.mu.Unlock()
}

func (a *activity) signalLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// newWait makes a wait point for the calling goroutine; tid is the program
// thread whose call it holds, or 0; what names it in reports.
func (a *activity) newWait(tid int, what string) *waitPoint {
	if a == nil {
		return nil
	}
	return &waitPoint{a: a, tid: tid, what: what}
}

// park marks the goroutine as waiting at w until ready (which must not
// take the socket's locks) reports true. Parking a parked goroutine only
// replaces ready.
func (w *waitPoint) park(ready func() bool) { w.parkFor(ready, false) }

// parkNotified is park for a wait on w's notifications (see notifyEntry):
// one not yet taken in also ends it.
func (w *waitPoint) parkNotified(ready func() bool) { w.parkFor(ready, true) }

func (w *waitPoint) parkFor(ready func() bool, notified bool) {
	if w == nil {
		return
	}
	a := w.a
	a.mu.Lock()
	w.ready, w.notified = ready, notified
	if !w.isParked {
		w.isParked = true
		a.running--
		a.parked[w] = struct{}{}
		a.signalLocked()
	}
	a.mu.Unlock()
}

// unpark marks the goroutine as running again; notifications that came
// before are now its to handle. Unparking a running goroutine does
// nothing.
func (w *waitPoint) unpark() {
	if w == nil {
		return
	}
	a := w.a
	a.mu.Lock()
	if !w.isParked {
		a.mu.Unlock()
		return
	}
	w.isParked = false
	a.running++
	delete(a.parked, w)
	a.signalLocked()
	a.mu.Unlock()
	w.pending.Store(0)
}

// notify records a wake-up on its way to the goroutine.
func (w *waitPoint) notify() {
	if w != nil {
		w.pending.Add(1)
	}
}

func (w *waitPoint) isReady() bool {
	return w.notified && w.pending.Load() > 0 || w.ready != nil && w.ready()
}

// quiet reports whether no goroutine runs and no parked one is ready to.
func (a *activity) quiet() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running > 0 {
		return false
	}
	for w := range a.parked {
		if w.isReady() {
			return false
		}
	}
	return true
}

// report says what is running and which waits are ready to end.
func (a *activity) report() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := fmt.Sprintf("%d goroutines running", a.running)
	for w := range a.parked {
		if w.isReady() {
			s += fmt.Sprintf("; %s ready to resume (pending %d)", w.what, w.pending.Load())
		}
	}
	return s
}

// holds reports whether a call of program thread tid is parked here.
func (a *activity) holds(tid int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for w := range a.parked {
		if w.tid == tid {
			return true
		}
	}
	return false
}

func (a *activity) changes() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// notifyEntry is a waiter entry that records each notification at w
// before passing it on to the returned channel, as
// waiter.NewChannelEntry does.
func notifyEntry(w *waitPoint, mask waiter.EventMask) (waiter.Entry, chan struct{}) {
	ch := make(chan struct{}, 1)
	e := waiter.NewFunctionEntry(mask, func(waiter.EventMask) {
		w.notify()
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return e, ch
}

// isClosed reports whether ch, a channel that is only ever closed, is.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pollNow reports whether fd has any of events now.
func pollNow(fd uintptr, events int16) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(p, 0)
	return err == nil && n > 0
}

// TrackActivity turns on the bookkeeping behind Quiet and Holds. Call it
// right after New, before the manager answers any call.
func (m *Manager) TrackActivity() { m.act.Store(newActivity()) }

func (m *Manager) activity() *activity { return m.act.Load() }

// Quiet reports whether the socket layer has nothing left to do until
// something outside it happens: a packet, a timer of the stack, a call or a
// close by the program. Sockets the program has closed are released first,
// here and now, rather than by the periodic sweep. It is false unless
// TrackActivity was called.
func (m *Manager) Quiet() bool {
	a := m.activity()
	if a == nil {
		return false
	}
	m.reapClosed(func(*socket) bool { return true })
	return a.quiet()
}

// ActivityReport says what keeps the layer from being quiet (for
// diagnostics).
func (m *Manager) ActivityReport() string {
	a := m.activity()
	if a == nil {
		return "activity not tracked"
	}
	return a.report()
}

// Holds reports whether a call of the program's thread tid is parked in
// the manager, waiting for the network (a blocking connect or accept).
func (m *Manager) Holds(tid int) bool {
	a := m.activity()
	return a != nil && a.holds(tid)
}

// Changes returns a channel closed the next time one of the layer's
// goroutines starts, parks, resumes or ends: a caller that saw the layer
// quiet and finds the channel still open knows that nothing of it has run
// since.
func (m *Manager) Changes() <-chan struct{} {
	a := m.activity()
	if a == nil {
		return nil
	}
	return a.changes()
}
