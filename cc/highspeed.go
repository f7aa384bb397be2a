package cc

import (
	"fmt"
	"math"
)

// HighSpeed is HighSpeed TCP (RFC 3649). Up to LowWindow packets it is
// Reno. Above, the decrease is b(w) = (HighDecrease - 0.5) *
// (log w - log LowWindow)/(log HighWindow - log LowWindow) + 0.5 and the
// increase per window a(w) = w^2 * p(w) * 2 b(w)/(2 - b(w)), where p(w) is
// the loss rate of the response function, interpolated log-linearly between
// LowP at LowWindow and HighP at HighWindow (section 5).
type HighSpeed struct {
	LowWindow    float64 // RFC 3649: 38
	HighWindow   float64 // RFC 3649: 83000
	HighP        float64 // RFC 3649: 1e-7
	HighDecrease float64 // RFC 3649: 0.1

	win window
}

func init() {
	Register("highspeed", "HighSpeed TCP, RFC 3649", func() Algorithm { return NewHighSpeed() })
}

// NewHighSpeed is HighSpeed TCP with RFC 3649's parameters.
func NewHighSpeed() *HighSpeed {
	return &HighSpeed{LowWindow: 38, HighWindow: 83000, HighP: 1e-7, HighDecrease: 0.1}
}

// lowP is the loss rate at which Reno's window is LowWindow: 1.5/w^2.
func (h *HighSpeed) lowP() float64 { return 1.5 / (h.LowWindow * h.LowWindow) }

func (h *HighSpeed) frac(w float64) float64 {
	return (math.Log(w) - math.Log(h.LowWindow)) / (math.Log(h.HighWindow) - math.Log(h.LowWindow))
}

// B is the decrease fraction b(w).
func (h *HighSpeed) B(w float64) float64 {
	if w <= h.LowWindow {
		return 0.5
	}
	return (h.HighDecrease-0.5)*h.frac(w) + 0.5
}

// P is the response function's loss rate p(w).
func (h *HighSpeed) P(w float64) float64 {
	return math.Exp(h.frac(w)*(math.Log(h.HighP)-math.Log(h.lowP())) + math.Log(h.lowP()))
}

// A is the increase a(w) in packets per window.
func (h *HighSpeed) A(w float64) float64 {
	if w <= h.LowWindow {
		return 1
	}
	b := h.B(w)
	return w * w * h.P(w) * 2 * b / (2 - b)
}

// OnAck implements Algorithm.
func (h *HighSpeed) OnAck(w *Window, a Ack) {
	left := h.win.slowStart(w, a.Packets)
	if left == 0 || inSlowStart(w) {
		return
	}
	cwnd := h.win.sync(w)
	h.win.set(w, cwnd+h.A(cwnd)*float64(left)/cwnd)
}

// OnLoss implements Algorithm.
func (h *HighSpeed) OnLoss(w *Window) {
	cwnd := h.win.sync(w)
	w.Ssthresh = max(int(cwnd*(1-h.B(cwnd))), 2)
}

// OnRTO implements Algorithm.
func (h *HighSpeed) OnRTO(w *Window) {
	h.OnLoss(w)
	h.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (h *HighSpeed) OnRecoveryExit(w *Window) { h.win.sync(w) }

// Info implements Algorithm.
func (h *HighSpeed) Info() string {
	return fmt.Sprintf("a:%.2f b:%.3f", h.A(max(h.win.cwnd, 1)), h.B(max(h.win.cwnd, 1)))
}
