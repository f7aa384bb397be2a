package cc

import "fmt"

// Reno is TCP Reno's window: slow start, then congestion avoidance adding
// one packet per window of acknowledged packets, ssthresh to half the
// flight on loss, and the window to one packet on a timeout (RFC 5681,
// sections 3.1-3.2). When fast recovery ends the window is ssthresh.
type Reno struct {
	// Increase is the packets added per window acknowledged in congestion
	// avoidance (RFC 5681: 1).
	Increase float64
	// Decrease is the fraction of the flight ssthresh becomes on loss
	// (RFC 5681: 1/2).
	Decrease float64

	win window
}

func init() {
	Register("reno", "Reno, RFC 5681", func() Algorithm { return NewReno5681() })
}

// NewReno5681 is Reno with RFC 5681's parameters.
func NewReno5681() *Reno { return &Reno{Increase: 1, Decrease: 0.5} }

// OnAck implements Algorithm.
func (r *Reno) OnAck(w *Window, a Ack) {
	left := r.win.slowStart(w, a.Packets)
	if left == 0 || inSlowStart(w) {
		return
	}
	cwnd := r.win.sync(w)
	r.win.set(w, cwnd+r.Increase*float64(left)/cwnd)
}

// OnLoss implements Algorithm.
func (r *Reno) OnLoss(w *Window) { w.Ssthresh = max(int(float64(w.Inflight)*r.Decrease), 2) }

// OnRTO implements Algorithm.
func (r *Reno) OnRTO(w *Window) {
	r.OnLoss(w)
	r.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (r *Reno) OnRecoveryExit(w *Window) { r.win.sync(w) }

// Info implements Algorithm.
func (r *Reno) Info() string { return fmt.Sprintf("cwnd:%.2f", r.win.cwnd) }
