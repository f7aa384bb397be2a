package cc

import (
	"fmt"
	"time"
)

// Vegas is TCP Vegas (L. Brakmo, L. Peterson, "TCP Vegas: End to End
// Congestion Avoidance on a Global Internet", IEEE JSAC 13(8), 1995). Once
// per round trip it compares the expected rate cwnd/BaseRTT with the actual
// cwnd/RTT; diff = (expected - actual) * BaseRTT is the number of its packets
// queued in the path. Below Alpha it adds a packet, above Beta it removes
// one (and ssthresh follows it down). BaseRTT is the least RTT seen, RTT the
// least of a round. A round ends when all the data outstanding at its start
// is acknowledged, so a round's RTTs are those of the data sent in the
// round before.
//
// Slow start is the paper's: the window doubles only every other round and
// stays fixed in between, so that the RTTs of the data a fixed window sent
// measure that window's queue; when that diff exceeds Gamma, slow start
// ends with the window that fills the path and queues one packet. (Growing
// in every round, as Linux's vegas does, compares RTTs from before a
// doubling with the window after it: slow start then overshoots to several
// times the path's capacity, and at one packet less per round the queue
// takes seconds to drain.) Losses are Reno's.
type Vegas struct {
	Alpha, Beta, Gamma float64 // packets queued (paper: 1 and 3; Linux: 2, 4, 1)

	base     time.Duration
	roundMin time.Duration // the least RTT of this round so far
	// roundEnd is the Delivered count that ends the round: the data
	// outstanding when it began. started: the first round has begun.
	roundEnd uint64
	started  bool
	// holding: in slow start, this round keeps the window fixed (else it
	// grows it); held is the window the last holding round kept.
	holding bool
	held    float64
	diff    float64
	win     window
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
	if !v.started {
		// This ACK is of the initial window, which no round changed.
		v.started, v.held = true, cwnd
		v.roundEnd = a.Delivered + uint64(max(w.Inflight, 0)*w.MSS)
	} else if a.Delivered >= v.roundEnd && v.roundMin > 0 {
		v.endRound(w, a, cwnd)
		return
	}
	if inSlowStart(w) && !v.holding {
		v.win.slowStart(w, a.Packets)
	}
}

// endRound adjusts the window once per round, at the ACK that ends it.
func (v *Vegas) endRound(w *Window, a Ack, cwnd float64) {
	rtt := v.roundMin
	v.roundEnd = a.Delivered + uint64(max(w.Inflight, 0)*w.MSS)
	v.roundMin = 0
	if inSlowStart(w) {
		if v.holding {
			// The next round's RTTs will be of the data this window sent.
			v.holding, v.held = false, cwnd
			return
		}
		// This round's RTTs were of the data the held window sent.
		v.diff = Diff(v.held, v.base, rtt)
		if v.diff > v.Gamma {
			// Slow start ends with the window that fills the path and
			// queues one packet: what slow start queued goes.
			v.win.set(w, max(min(cwnd, v.held*v.base.Seconds()/rtt.Seconds()+1), 2))
			w.Ssthresh = max(w.Cwnd, 2)
			return
		}
		v.holding = true
		return
	}
	v.diff = Diff(cwnd, v.base, rtt)
	switch {
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
