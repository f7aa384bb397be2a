package cc

import (
	"fmt"
	"time"
)

// Westwood is TCP Westwood+ (S. Mascolo et al., "TCP Westwood: Bandwidth
// Estimation for Enhanced Transport over Wireless Links", MobiCom 2001; L.
// Grieco, S. Mascolo, "Performance evaluation and comparison of Westwood+,
// New Reno, and Vegas TCP congestion control", CCR 34(2), 2004). It grows as
// Reno; it estimates the bandwidth from the bytes acknowledged per RTT (one
// sample per round, the + of Westwood+), smoothed as BWE = Gain*BWE +
// (1-Gain)*sample; after a loss ssthresh = BWE*RTTmin/MSS instead of half
// the window.
type Westwood struct {
	Gain float64 // weight of the old estimate (Linux: 7/8)

	bwe    float64 // bytes per second
	minRTT time.Duration
	lastTS time.Duration
	win    window
	reno   Reno
}

func init() {
	Register("westwood", "TCP Westwood+, Mascolo et al. 2001, Grieco and Mascolo 2004", func() Algorithm {
		return &Westwood{Gain: 7.0 / 8, reno: *NewReno5681()}
	})
}

// OnAck implements Algorithm.
func (ww *Westwood) OnAck(w *Window, a Ack) {
	if a.RTT > 0 && (ww.minRTT == 0 || a.RTT < ww.minRTT) {
		ww.minRTT = a.RTT
	}
	if a.DeliveryRate > 0 && w.Now-ww.lastTS >= max(w.SRTT, time.Millisecond) {
		ww.lastTS = w.Now
		if ww.bwe == 0 {
			ww.bwe = a.DeliveryRate
		} else {
			ww.bwe = ww.Gain*ww.bwe + (1-ww.Gain)*a.DeliveryRate
		}
	}
	ww.reno.OnAck(w, a)
}

// Ssthresh is the window, in packets, the estimate allows.
func (ww *Westwood) Ssthresh(mss int) int {
	if ww.bwe == 0 || ww.minRTT == 0 || mss == 0 {
		return 0
	}
	return int(ww.bwe * ww.minRTT.Seconds() / float64(mss))
}

// OnLoss implements Algorithm.
func (ww *Westwood) OnLoss(w *Window) {
	if s := ww.Ssthresh(w.MSS); s > 0 {
		w.Ssthresh = max(s, 2)
		return
	}
	halve(w)
}

// OnRTO implements Algorithm.
func (ww *Westwood) OnRTO(w *Window) {
	ww.OnLoss(w)
	ww.reno.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (ww *Westwood) OnRecoveryExit(w *Window) { ww.reno.win.sync(w) }

// Info implements Algorithm.
func (ww *Westwood) Info() string {
	return fmt.Sprintf("bw:%.0fbps rtt_min:%.3fms", ww.bwe*8, float64(ww.minRTT)/1e6)
}
