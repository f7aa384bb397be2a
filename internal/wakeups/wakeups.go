// Package wakeups measures goroutine hand-offs in a Go execution trace
// (USTACK_GOTRACE): for every goroutine made runnable by another, how long
// it waited before it ran, summed by the function that woke it. A request
// crossing the supervisor is a chain of such hand-offs (the program's
// socketpair, a relay, netstack, the gateway, the host socket); their
// count per operation and their waits say which of them the latency is
// made of, which a CPU profile cannot, since a goroutine waiting to run
// uses no CPU.
package wakeups

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/exp/trace"
)

// Waker is what one waking function's hand-offs cost.
type Waker struct {
	Func   string  // the innermost frame of the waker's stack that keep chose
	Count  int     // goroutines it woke that then ran
	Total  float64 // µs they waited, summed
	P50    float64 // µs
	P90    float64 // µs
	SameP  int     // of Count, those that ran on the waker's P
	delays []float64
}

// Mean is the mean wait in µs.
func (w *Waker) Mean() float64 { return w.Total / float64(w.Count) }

// Report is a trace's hand-offs, the costliest waker first.
type Report struct {
	Wakers []*Waker
	Total  float64 // µs waited by all woken goroutines
	Count  int
}

// Analyze reads a trace and attributes each wake-up to the innermost frame
// of the waking stack for which keep returns true (the top frame if none
// does; "(no stack)" for wake-ups by the runtime's poller, which have none).
func Analyze(r io.Reader, keep func(fn string) bool) (*Report, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading the trace: %w", err)
	}
	type woken struct {
		at trace.Time
		p  trace.ProcID
		by string
	}
	pending := map[trace.GoID]woken{}
	byFunc := map[string]*Waker{}
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the trace: %w", err)
		}
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		switch {
		case from == trace.GoWaiting && to == trace.GoRunnable:
			pending[id] = woken{at: ev.Time(), p: ev.Proc(), by: waker(ev.Stack(), keep)}
		case from == trace.GoRunnable && to == trace.GoRunning:
			w, ok := pending[id]
			if !ok {
				continue // runnable since before the trace, or new
			}
			delete(pending, id)
			a := byFunc[w.by]
			if a == nil {
				a = &Waker{Func: w.by}
				byFunc[w.by] = a
			}
			d := float64(ev.Time()-w.at) / 1e3
			a.Count++
			a.Total += d
			a.delays = append(a.delays, d)
			if ev.Proc() == w.p {
				a.SameP++
			}
		}
	}
	rep := &Report{}
	for _, a := range byFunc {
		slices.Sort(a.delays)
		a.P50 = a.delays[len(a.delays)/2]
		a.P90 = a.delays[len(a.delays)*9/10]
		rep.Wakers = append(rep.Wakers, a)
		rep.Total += a.Total
		rep.Count += a.Count
	}
	slices.SortFunc(rep.Wakers, func(x, y *Waker) int {
		return cmp.Or(cmp.Compare(y.Total, x.Total), strings.Compare(x.Func, y.Func))
	})
	return rep, nil
}

func waker(s trace.Stack, keep func(string) bool) string {
	top := ""
	for f := range s.Frames() {
		if top == "" {
			top = f.Func
		}
		if keep(f.Func) {
			return f.Func
		}
	}
	if top == "" {
		return "(no stack)"
	}
	return top
}

// Write prints the report as a table, the first n wakers; with ops > 0
// also the wake-ups and the wait per operation.
func (r *Report) Write(w io.Writer, n, ops int) {
	fmt.Fprintf(w, "%d wake-ups, %.1f ms waited in all", r.Count, r.Total/1e3)
	if ops > 0 {
		fmt.Fprintf(w, "; per operation (%d): %.1f wake-ups, %.1f µs waited", ops, float64(r.Count)/float64(ops), r.Total/float64(ops))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-9s %-9s %-9s %-9s %-9s %-7s %s\n", "count", "per op", "mean µs", "p50 µs", "p90 µs", "same P", "woken by")
	for i, a := range r.Wakers {
		if i == n {
			break
		}
		perOp := "-"
		if ops > 0 {
			perOp = fmt.Sprintf("%.2f", float64(a.Count)/float64(ops))
		}
		fmt.Fprintf(w, "%-9d %-9s %-9.1f %-9.1f %-9.1f %-7s %s\n", a.Count, perOp, a.Mean(), a.P50, a.P90,
			fmt.Sprintf("%.0f%%", 100*float64(a.SameP)/float64(a.Count)), a.Func)
	}
}
