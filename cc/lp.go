package cc

import (
	"fmt"
	"time"
)

// LP is TCP-LP, low priority (A. Kuzmanovic, E. Knightly, "TCP-LP: A
// Distributed Algorithm for Low Priority Data Transfer", INFOCOM 2003). It
// yields to other traffic: an early congestion indication is a smoothed
// delay above min + Delta*(max - min) of the delays seen; on the first the
// window halves and an inference time of Inference RTTs starts in which it
// does not grow; a second indication within it takes the window to one
// packet. It grows as Reno otherwise. The paper uses one-way delays from
// timestamps; this sender gives RTT samples, so LP uses RTTs.
type LP struct {
	Delta     float64 // threshold within [min, max] delay (paper: 0.15)
	Inference float64 // inference time in RTTs (paper: 3)

	smooth, dmin, dmax time.Duration
	inferEnd           time.Duration
	reno               Reno
}

func init() {
	Register("lp", "TCP-LP, Kuzmanovic and Knightly 2003", func() Algorithm {
		return &LP{Delta: 0.15, Inference: 3, reno: *NewReno5681()}
	})
}

// Early reports whether smoothed delay d is an early congestion indication
// given the least and largest delays seen.
func (l *LP) Early(d, dmin, dmax time.Duration) bool {
	return dmax > dmin && float64(d) > float64(dmin)+l.Delta*float64(dmax-dmin)
}

// OnAck implements Algorithm.
func (l *LP) OnAck(w *Window, a Ack) {
	if a.RTT > 0 {
		if l.smooth == 0 {
			l.smooth = a.RTT
		} else {
			l.smooth = (7*l.smooth + a.RTT) / 8
		}
		if l.dmin == 0 || a.RTT < l.dmin {
			l.dmin = a.RTT
		}
		l.dmax = max(l.dmax, a.RTT)
	}
	if l.Early(l.smooth, l.dmin, l.dmax) {
		cwnd := l.reno.win.sync(w)
		if w.Now < l.inferEnd {
			l.reno.win.set(w, 1)
		} else {
			l.reno.win.set(w, cwnd/2)
		}
		w.Ssthresh = max(w.Cwnd, 2)
		l.inferEnd = w.Now + time.Duration(l.Inference*float64(max(w.SRTT, l.dmin)))
		// The smoothed delay starts again from the next samples.
		l.smooth = 0
		return
	}
	if w.Now < l.inferEnd {
		return
	}
	l.reno.OnAck(w, a)
}

// OnLoss implements Algorithm.
func (l *LP) OnLoss(w *Window) { l.reno.OnLoss(w) }

// OnRTO implements Algorithm.
func (l *LP) OnRTO(w *Window) { l.reno.OnRTO(w) }

// OnRecoveryExit implements Algorithm.
func (l *LP) OnRecoveryExit(w *Window) { l.reno.OnRecoveryExit(w) }

// Info implements Algorithm.
func (l *LP) Info() string {
	return fmt.Sprintf("rtt_min:%.3fms rtt_max:%.3fms inference_end:%v", float64(l.dmin)/1e6, float64(l.dmax)/1e6, l.inferEnd)
}
