package cc

import (
	"fmt"
	"math"
	"time"
)

// Hybla is TCP Hybla (C. Caini, R. Firrincieli, "TCP Hybla: a TCP
// enhancement for heterogeneous networks", Int. J. Satellite Commun. Netw.
// 22, 2004): with rho = RTT/RTT0 (at least 1), each acknowledged packet adds
// 2^rho - 1 packets in slow start and rho^2/cwnd in congestion avoidance, so
// the sending rate (window over RTT) grows per second as a connection with
// RTT0 would, whatever its RTT. The RTT is the path's, the least RTT seen
// (as Linux's hybla), not the smoothed RTT: queueing delay would raise rho,
// and slow start's 2^rho - 1 packets per ACK with it, so that a flow
// overflowing its bottleneck would overflow it more. Losses are Reno's.
type Hybla struct {
	RTT0 time.Duration // reference RTT (paper: 25 ms)

	rho    float64
	minRTT time.Duration
	win    window
}

func init() {
	Register("hybla", "TCP Hybla, Caini and Firrincieli 2004", func() Algorithm { return &Hybla{RTT0: 25 * time.Millisecond, rho: 1} })
}

// Rho is the RTT ratio the algorithm uses for rtt.
func (h *Hybla) Rho(rtt time.Duration) float64 {
	if rtt <= 0 {
		return 1
	}
	return max(float64(rtt)/float64(h.RTT0), 1)
}

// OnAck implements Algorithm.
func (h *Hybla) OnAck(w *Window, a Ack) {
	if a.RTT > 0 && (h.minRTT == 0 || a.RTT < h.minRTT) {
		h.minRTT = a.RTT
		h.rho = h.Rho(a.RTT)
	}
	cwnd := h.win.sync(w)
	n := float64(a.Packets)
	if cwnd < float64(w.Ssthresh) {
		h.win.set(w, min(cwnd+n*(math.Pow(2, h.rho)-1), float64(w.Ssthresh)))
		return
	}
	h.win.set(w, cwnd+n*h.rho*h.rho/cwnd)
}

// OnLoss implements Algorithm.
func (h *Hybla) OnLoss(w *Window) { halve(w) }

// OnRTO implements Algorithm.
func (h *Hybla) OnRTO(w *Window) {
	halve(w)
	h.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (h *Hybla) OnRecoveryExit(w *Window) { h.win.sync(w) }

// Info implements Algorithm.
func (h *Hybla) Info() string { return fmt.Sprintf("rho:%.2f", h.rho) }
