package cc

import (
	"fmt"
	"time"
)

// Illinois is TCP-Illinois (S. Liu, T. Basar, R. Srikant, "TCP-Illinois: A
// Loss and Delay-Based Congestion Control Algorithm for High-Speed
// Networks", VALUETOOLS 2006). Loss says when to back off, queueing delay
// says how much: with da the average queueing delay of the last round
// (average RTT - BaseRTT) and dm the largest seen, the increase per window is
// alpha = AlphaMax while da <= d1 = 0.01 dm and k1/(k2 + da) above, falling
// to AlphaMin at dm; the decrease beta is BetaMin up to d2 = 0.1 dm, BetaMax
// from d3 = 0.8 dm, and linear between (section 3).
type Illinois struct {
	AlphaMin, AlphaMax float64 // paper: 0.3, 10
	BetaMin, BetaMax   float64 // paper: 0.125, 0.5

	base, maxRTT time.Duration
	sum          time.Duration
	count        int
	roundEnd     time.Duration
	alpha, beta  float64
	win          window
}

func init() {
	Register("illinois", "TCP-Illinois, Liu, Basar and Srikant 2006", func() Algorithm {
		return &Illinois{AlphaMin: 0.3, AlphaMax: 10, BetaMin: 0.125, BetaMax: 0.5, alpha: 1, beta: 0.5}
	})
}

// Alpha is the increase per window for average queueing delay da and
// largest queueing delay dm.
func (il *Illinois) Alpha(da, dm time.Duration) float64 {
	d1 := 0.01 * dm.Seconds()
	x := da.Seconds()
	if dm <= 0 || x <= d1 {
		return il.AlphaMax
	}
	span := dm.Seconds() - d1
	k1 := span * il.AlphaMin * il.AlphaMax / (il.AlphaMax - il.AlphaMin)
	k2 := span*il.AlphaMin/(il.AlphaMax-il.AlphaMin) - d1
	return k1 / (k2 + x)
}

// Beta is the decrease for average queueing delay da and largest dm.
func (il *Illinois) Beta(da, dm time.Duration) float64 {
	d2, d3, x := 0.1*dm.Seconds(), 0.8*dm.Seconds(), da.Seconds()
	switch {
	case dm <= 0 || x <= d2:
		return il.BetaMin
	case x >= d3:
		return il.BetaMax
	}
	k3 := (il.BetaMin*d3 - il.BetaMax*d2) / (d3 - d2)
	k4 := (il.BetaMax - il.BetaMin) / (d3 - d2)
	return k3 + k4*x
}

// OnAck implements Algorithm.
func (il *Illinois) OnAck(w *Window, a Ack) {
	if a.RTT > 0 {
		if il.base == 0 || a.RTT < il.base {
			il.base = a.RTT
		}
		il.maxRTT = max(il.maxRTT, a.RTT)
		il.sum += a.RTT
		il.count++
	}
	if w.Now >= il.roundEnd && il.count > 0 {
		da, dm := il.sum/time.Duration(il.count)-il.base, il.maxRTT-il.base
		il.alpha, il.beta = il.Alpha(da, dm), il.Beta(da, dm)
		il.sum, il.count = 0, 0
		il.roundEnd = w.Now + w.SRTT
	}
	left := il.win.slowStart(w, a.Packets)
	if left == 0 || inSlowStart(w) {
		return
	}
	cwnd := il.win.sync(w)
	il.win.set(w, cwnd+il.alpha*float64(left)/cwnd)
}

// OnLoss implements Algorithm.
func (il *Illinois) OnLoss(w *Window) {
	w.Ssthresh = max(int(il.win.sync(w)*(1-il.beta)), 2)
}

// OnRTO implements Algorithm.
func (il *Illinois) OnRTO(w *Window) {
	il.OnLoss(w)
	il.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (il *Illinois) OnRecoveryExit(w *Window) { il.win.sync(w) }

// Info implements Algorithm.
func (il *Illinois) Info() string { return fmt.Sprintf("alpha:%.2f beta:%.3f", il.alpha, il.beta) }
