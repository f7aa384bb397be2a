package cc

import "fmt"

// NewReno is Reno with RFC 6582's end of fast recovery: when the recovery
// point is acknowledged the window becomes min(ssthresh, FlightSize + 1
// packet) (section 3.2, step 3, option 1), so a burst is not sent into the
// path at once when little is in flight. Partial acknowledgements during
// recovery are the sender's (netstack's own RFC 6582 recovery).
type NewReno struct {
	Reno
}

func init() {
	Register("newreno", "NewReno, RFC 6582", func() Algorithm { return &NewReno{Reno: *NewReno5681()} })
}

// OnRecoveryExit implements Algorithm.
func (n *NewReno) OnRecoveryExit(w *Window) {
	n.win.set(w, float64(min(w.Ssthresh, w.Inflight+1)))
}

// Info implements Algorithm.
func (n *NewReno) Info() string { return fmt.Sprintf("cwnd:%.2f", n.win.cwnd) }
