package cc

import "fmt"

// BIC is BIC-TCP (L. Xu, K. Harfoush, I. Rhee, "Binary Increase Congestion
// Control for Fast, Long Distance Networks", INFOCOM 2004). Below
// LowWindow it is Reno. Above, per RTT it moves the window half way to the
// window of the last loss (binary search), by at most SMax and at least
// SMin packets; past that window it probes for a new maximum, slowly at
// first and then by SMax. On loss the window becomes Beta of itself, and
// with fast convergence the remembered maximum is lowered when losses come
// before the old one is reached.
type BIC struct {
	Beta       float64 // multiplicative decrease (paper: 0.8)
	SMax, SMin float64 // largest and smallest increase per RTT (paper: 32, 0.01)
	LowWindow  float64 // below it, Reno (Linux: 14)

	wMax float64
	win  window
}

func init() {
	Register("bic", "BIC-TCP, Xu, Harfoush and Rhee 2004", func() Algorithm {
		return &BIC{Beta: 0.8, SMax: 32, SMin: 0.01, LowWindow: 14}
	})
}

// Increase is the increase per RTT at window cwnd.
func (b *BIC) Increase(cwnd float64) float64 {
	if cwnd < b.wMax {
		return min(max((b.wMax-cwnd)/2, b.SMin), b.SMax)
	}
	// Max probing: slow start-like away from the old maximum.
	return min(max(cwnd-b.wMax, 1), b.SMax)
}

// OnAck implements Algorithm.
func (b *BIC) OnAck(w *Window, a Ack) {
	left := b.win.slowStart(w, a.Packets)
	if left == 0 || inSlowStart(w) {
		return
	}
	cwnd := b.win.sync(w)
	if cwnd < b.LowWindow {
		b.win.set(w, cwnd+float64(left)/cwnd)
		return
	}
	b.win.set(w, cwnd+b.Increase(cwnd)*float64(left)/cwnd)
}

// OnLoss implements Algorithm.
func (b *BIC) OnLoss(w *Window) {
	cwnd := b.win.sync(w)
	if cwnd < b.LowWindow {
		b.wMax = cwnd
		halve(w)
		return
	}
	if cwnd < b.wMax {
		b.wMax = cwnd * (1 + b.Beta) / 2
	} else {
		b.wMax = cwnd
	}
	w.Ssthresh = max(int(cwnd*b.Beta), 2)
}

// OnRTO implements Algorithm.
func (b *BIC) OnRTO(w *Window) {
	b.OnLoss(w)
	b.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (b *BIC) OnRecoveryExit(w *Window) { b.win.sync(w) }

// Info implements Algorithm.
func (b *BIC) Info() string { return fmt.Sprintf("wmax:%.1f", b.wMax) }
