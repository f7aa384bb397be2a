package cc

import (
	"fmt"
	"time"
)

// Veno is TCP Veno (C. P. Fu, S. C. Liew, "TCP Veno: TCP Enhancement for
// Transmission Over Wireless Access Networks", IEEE JSAC 21(2), 2003). It
// estimates its packets queued in the path as Vegas does, N = (cwnd/BaseRTT
// - cwnd/RTT) * BaseRTT. Below Beta packets the path is not congested: it
// grows as Reno, and takes a loss for a random one, keeping 4/5 of the
// window. At or above Beta it grows one packet every other RTT and halves on
// loss.
type Veno struct {
	Beta float64 // queued packets that mean congestion (paper: 3)

	base, rtt time.Duration
	n         float64
	odd       bool
	win       window
}

func init() {
	Register("veno", "TCP Veno, Fu and Liew 2003", func() Algorithm { return &Veno{Beta: 3} })
}

// OnAck implements Algorithm.
func (v *Veno) OnAck(w *Window, a Ack) {
	if a.RTT > 0 {
		if v.base == 0 || a.RTT < v.base {
			v.base = a.RTT
		}
		v.rtt = a.RTT
	}
	left := v.win.slowStart(w, a.Packets)
	if left == 0 || inSlowStart(w) {
		return
	}
	cwnd := v.win.sync(w)
	v.n = Diff(cwnd, v.base, v.rtt)
	inc := float64(left) / cwnd
	if v.n >= v.Beta {
		inc /= 2
	}
	v.win.set(w, cwnd+inc)
}

// OnLoss implements Algorithm.
func (v *Veno) OnLoss(w *Window) {
	cwnd := v.win.sync(w)
	if v.n < v.Beta {
		w.Ssthresh = max(int(cwnd*4/5), 2)
		return
	}
	w.Ssthresh = max(int(cwnd/2), 2)
}

// OnRTO implements Algorithm.
func (v *Veno) OnRTO(w *Window) {
	halve(w)
	v.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (v *Veno) OnRecoveryExit(w *Window) { v.win.sync(w) }

// Info implements Algorithm.
func (v *Veno) Info() string { return fmt.Sprintf("queued:%.2f", v.n) }
