package cc

import (
	"fmt"
	"math"
	"time"
)

// HTCP is H-TCP (D. Leith, R. Shorten, "H-TCP: TCP for high-speed and
// long-distance networks", PFLDnet 2004; RFC draft-leith-tcp-htcp-06). With
// D the time since the last congestion event, the increase per window is
// alpha(D) = 1 for D <= DeltaL, else 1 + 10(D-DeltaL) + ((D-DeltaL)/2)^2
// (seconds), scaled by 2(1-beta) so that the flow stays fair to itself; the
// backoff beta = RTTmin/RTTmax, kept within [BetaMin, BetaMax].
type HTCP struct {
	DeltaL           time.Duration // low-speed period (paper: 1 s)
	BetaMin, BetaMax float64       // paper: 0.5, 0.8

	lastLoss       time.Duration
	minRTT, maxRTT time.Duration
	beta           float64
	win            window
}

func init() {
	Register("htcp", "H-TCP, Leith and Shorten 2004", func() Algorithm {
		return &HTCP{DeltaL: time.Second, BetaMin: 0.5, BetaMax: 0.8, beta: 0.5}
	})
}

// Alpha is the increase per window D after the last congestion event, for
// backoff factor beta.
func (h *HTCP) Alpha(d time.Duration, beta float64) float64 {
	a := 1.0
	if d > h.DeltaL {
		x := (d - h.DeltaL).Seconds()
		a = 1 + 10*x + math.Pow(x/2, 2)
	}
	return 2 * (1 - beta) * a
}

// Beta is the backoff factor for the RTTs seen.
func (h *HTCP) Beta(minRTT, maxRTT time.Duration) float64 {
	if minRTT <= 0 || maxRTT <= 0 {
		return h.BetaMin
	}
	return min(max(float64(minRTT)/float64(maxRTT), h.BetaMin), h.BetaMax)
}

// OnAck implements Algorithm.
func (h *HTCP) OnAck(w *Window, a Ack) {
	if a.RTT > 0 {
		if h.minRTT == 0 || a.RTT < h.minRTT {
			h.minRTT = a.RTT
		}
		h.maxRTT = max(h.maxRTT, a.RTT)
	}
	left := h.win.slowStart(w, a.Packets)
	if left == 0 || inSlowStart(w) {
		return
	}
	cwnd := h.win.sync(w)
	h.win.set(w, cwnd+h.Alpha(w.Now-h.lastLoss, h.beta)*float64(left)/cwnd)
}

// OnLoss implements Algorithm.
func (h *HTCP) OnLoss(w *Window) {
	h.beta = h.Beta(h.minRTT, h.maxRTT)
	w.Ssthresh = max(int(h.win.sync(w)*h.beta), 2)
	h.lastLoss = w.Now
	h.maxRTT = 0
}

// OnRTO implements Algorithm.
func (h *HTCP) OnRTO(w *Window) {
	h.OnLoss(w)
	h.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (h *HTCP) OnRecoveryExit(w *Window) { h.win.sync(w) }

// Info implements Algorithm.
func (h *HTCP) Info() string { return fmt.Sprintf("beta:%.2f", h.beta) }
