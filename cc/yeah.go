package cc

import (
	"fmt"
	"time"
)

// YeAH is YeAH-TCP, "Yet Another Highspeed TCP" (A. Baiocchi, A. P.
// Castellani, F. Vacirca, PFLDnet 2007), with the constants Linux uses.
// It runs in one of two modes, chosen once per RTT from a Vegas-style
// estimate of its own packets in the bottleneck queue,
// Q = cwnd * (RTT - BaseRTT) / RTT, RTT the least of the round:
//
//   - Fast mode, while Q <= MaxQueue and the queueing delay RTT - BaseRTT
//     is at most Phi * BaseRTT: the window grows as Scalable TCP's, one
//     packet per min(cwnd, ScalableAI) acknowledged.
//   - Slow mode otherwise: the window grows as Reno's, and when Q exceeds
//     MaxQueue it is lowered by min(Q/Gamma, Epsilon * cwnd) at once
//     (precautionary decongestion), never below the estimate of what a
//     competing Reno flow would have (renoCount).
//
// On loss the window drops by the queue estimate of the last round,
// between Delta and one half of the window, unless it has been in slow
// mode for Rho rounds running: it then competes with Reno flows and halves,
// as they do.
type YeAH struct {
	MaxQueue   float64 // packets of its own queued before it decongests (80)
	Phi        float64 // most queueing delay in fast mode, as a fraction of BaseRTT (1/8)
	Gamma      float64 // decongestion removes Q/Gamma packets (1) ...
	Epsilon    float64 // ... but at most this fraction of the window (1/2)
	Delta      float64 // least fraction of the window removed on loss (1/8)
	Rho        int     // slow rounds running after which a loss halves (16)
	Zeta       int     // fast rounds after which renoCount resets (50)
	ScalableAI float64 // fast mode: one packet per min(cwnd, ScalableAI) acknowledged (100)

	base      time.Duration
	roundMin  time.Duration
	roundEnd  time.Duration
	queue     float64 // Q of the last round
	renoCount float64 // the window a Reno flow would have, for decongestion's floor
	fastCount int
	slowRuns  int // slow rounds running (Linux: doing_reno_now)
	win       window
}

func init() {
	Register("yeah", "YeAH-TCP, Baiocchi, Castellani and Vacirca 2007", func() Algorithm { return NewYeAH() })
}

// NewYeAH is YeAH with Linux's constants.
func NewYeAH() *YeAH {
	return &YeAH{MaxQueue: 80, Phi: 1.0 / 8, Gamma: 1, Epsilon: 0.5, Delta: 1.0 / 8, Rho: 16, Zeta: 50, ScalableAI: 100, renoCount: 2}
}

// Queue is the estimate of the flow's packets queued for a window, base
// and current RTT: cwnd * (rtt - base) / rtt.
func (y *YeAH) Queue(cwnd float64, base, rtt time.Duration) float64 {
	if rtt <= 0 || base <= 0 || rtt < base {
		return 0
	}
	return cwnd * float64(rtt-base) / float64(rtt)
}

// OnAck implements Algorithm.
func (y *YeAH) OnAck(w *Window, a Ack) {
	if a.RTT > 0 {
		if y.base == 0 || a.RTT < y.base {
			y.base = a.RTT
		}
		if y.roundMin == 0 || a.RTT < y.roundMin {
			y.roundMin = a.RTT
		}
	}
	left := y.win.slowStart(w, a.Packets)
	if left > 0 && !inSlowStart(w) {
		cwnd := y.win.sync(w)
		if y.slowRuns == 0 {
			y.win.set(w, cwnd+float64(left)/min(cwnd, y.ScalableAI))
		} else {
			y.win.set(w, cwnd+float64(left)/cwnd)
		}
	}
	if w.Now >= y.roundEnd && y.roundMin > 0 {
		y.round(w)
	}
}

// round runs once per RTT: the queue estimate and the mode.
func (y *YeAH) round(w *Window) {
	rtt := y.roundMin
	y.roundEnd = w.Now + max(w.SRTT, rtt)
	y.roundMin = 0
	cwnd := y.win.sync(w)
	q := y.Queue(cwnd, y.base, rtt)
	if q > y.MaxQueue || float64(rtt-y.base) > y.Phi*float64(y.base) {
		if q > y.MaxQueue && cwnd > y.renoCount {
			cut := min(q/y.Gamma, y.Epsilon*cwnd)
			y.win.set(w, max(cwnd-cut, y.renoCount))
			w.Ssthresh = max(w.Cwnd, 2)
		}
		if y.renoCount <= 2 {
			y.renoCount = max(float64(w.Cwnd)/2, 2)
		} else {
			y.renoCount++
		}
		y.slowRuns++
	} else {
		if y.fastCount++; y.fastCount > y.Zeta {
			y.renoCount, y.fastCount = 2, 0
		}
		y.slowRuns = 0
	}
	y.queue = q
}

// Reduction is the packets a loss removes from window cwnd.
func (y *YeAH) Reduction(cwnd float64) float64 {
	half := max(cwnd/2, 2)
	if y.slowRuns >= y.Rho {
		return half
	}
	return max(min(y.queue, half), y.Delta*cwnd)
}

// OnLoss implements Algorithm.
func (y *YeAH) OnLoss(w *Window) {
	cwnd := y.win.sync(w)
	w.Ssthresh = max(int(cwnd-y.Reduction(cwnd)), 2)
	y.fastCount = 0
	y.renoCount = max(y.renoCount/2, 2)
}

// OnRTO implements Algorithm.
func (y *YeAH) OnRTO(w *Window) {
	y.OnLoss(w)
	y.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (y *YeAH) OnRecoveryExit(w *Window) { y.win.sync(w) }

// Info implements Algorithm.
func (y *YeAH) Info() string {
	mode := "fast"
	if y.slowRuns > 0 {
		mode = "slow"
	}
	return fmt.Sprintf("mode:%s queue:%.1f baseRTT:%.3fms reno_count:%.0f", mode, y.queue, float64(y.base)/1e6, y.renoCount)
}
