package cc

import (
	"fmt"
	"time"
)

// Vegas is TCP Vegas (L. Brakmo, L. Peterson, "TCP Vegas: End to End
// Congestion Avoidance on a Global Internet", IEEE JSAC 13(8), 1995). Once
// per RTT it compares the expected rate cwnd/BaseRTT with the actual
// cwnd/RTT; diff = (expected - actual) * BaseRTT is the number of its packets
// queued in the path. Below Alpha it adds a packet, above Beta it removes
// one (and ssthresh follows it down); in slow start it leaves slow start
// when diff exceeds Gamma, with the window that queues one packet. BaseRTT
// is the least RTT seen, RTT the least in the last round. Losses are Reno's.
type Vegas struct {
	Alpha, Beta, Gamma float64 // packets queued (paper: 1 and 3; Linux: 2, 4, 1)

	base     time.Duration
	roundMin time.Duration
	// roundMinLast is the last round's RTT.
	roundMinLast time.Duration
	roundEnd     time.Duration
	diff         float64
	win          window
}

func init() {
	Register("vegas", "TCP Vegas, Brakmo and Peterson 1995", func() Algorithm { return &Vegas{Alpha: 2, Beta: 4, Gamma: 1} })
}

// Diff is the queue estimate for a window, base and current RTT.
func Diff(cwnd float64, base, rtt time.Duration) float64 {
	if rtt <= 0 || base <= 0 {
		return 0
	}
	return (cwnd/base.Seconds() - cwnd/rtt.Seconds()) * base.Seconds()
}

// OnAck implements Algorithm.
func (v *Vegas) OnAck(w *Window, a Ack) {
	if a.RTT > 0 {
		if v.base == 0 || a.RTT < v.base {
			v.base = a.RTT
		}
		if v.roundMin == 0 || a.RTT < v.roundMin {
			v.roundMin = a.RTT
		}
	}
	cwnd := v.win.sync(w)
	if w.Now < v.roundEnd || v.roundMin == 0 {
		// Within the round: slow start goes on packet by packet.
		if inSlowStart(w) {
			v.win.slowStart(w, a.Packets)
		}
		return
	}
	v.diff = Diff(cwnd, v.base, v.roundMin)
	v.roundEnd = w.Now + max(w.SRTT, v.roundMin)
	v.roundMinLast, v.roundMin = v.roundMin, 0
	switch {
	case inSlowStart(w):
		if v.diff > v.Gamma {
			// Slow start ends with the window that fills the path and
			// queues one packet: what slow start queued goes.
			v.win.set(w, max(min(cwnd, cwnd*v.base.Seconds()/v.roundMinLast.Seconds()+1), 2))
			w.Ssthresh = max(w.Cwnd, 2)
			return
		}
		v.win.slowStart(w, a.Packets)
	case v.diff < v.Alpha:
		v.win.set(w, cwnd+1)
	case v.diff > v.Beta:
		// ssthresh follows the window down, or the next ACK of the round
		// would find the window below it and slow-start it back up.
		v.win.set(w, max(cwnd-1, 2))
		w.Ssthresh = min(w.Ssthresh, max(w.Cwnd, 2))
	}
}

// OnLoss implements Algorithm.
func (v *Vegas) OnLoss(w *Window) { halve(w) }

// OnRTO implements Algorithm.
func (v *Vegas) OnRTO(w *Window) {
	halve(w)
	v.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (v *Vegas) OnRecoveryExit(w *Window) { v.win.sync(w) }

// Info implements Algorithm: as Linux's vegas info, base and current RTT.
func (v *Vegas) Info() string {
	return fmt.Sprintf("baseRTT:%.3fms diff:%.2f", float64(v.base)/1e6, v.diff)
}
