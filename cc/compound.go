package cc

import (
	"fmt"
	"math"
	"time"
)

// Compound is Compound TCP (K. Tan, J. Song, Q. Zhang, M. Sridharan, "A
// Compound TCP Approach for High-speed and Long Distance Networks",
// INFOCOM 2006; draft-sridharan-tcpm-ctcp-02). The window is a Reno part
// cwnd plus a delay-based part dwnd. Once per RTT, with diff the packets
// queued as Vegas estimates them: below Gamma, dwnd += max(Alpha*win^K - 1,
// 0); above, dwnd -= Zeta*diff (not below 0). On loss the window becomes
// (1-Beta) of itself and dwnd = max(win*(1-Beta) - cwnd/2, 0).
type Compound struct {
	Alpha, K, Beta, Zeta, Gamma float64 // paper: 1/8, 3/4, 1/2, 1, 30

	reno       float64 // the Reno part, packets
	dwnd       float64
	base, rtt  time.Duration
	roundEnd   time.Duration
	win        window
	lastWindow int
}

func init() {
	Register("compound", "Compound TCP, Tan et al. 2006", func() Algorithm {
		return &Compound{Alpha: 1.0 / 8, K: 0.75, Beta: 0.5, Zeta: 1, Gamma: 30}
	})
}

// DwndStep is the change of dwnd in one round at window win with diff
// packets queued.
func (c *Compound) DwndStep(win, diff, dwnd float64) float64 {
	if diff < c.Gamma {
		return max(c.Alpha*math.Pow(win, c.K)-1, 0)
	}
	return -min(c.Zeta*diff, dwnd)
}

func (c *Compound) parts(w *Window) float64 {
	win := c.win.sync(w)
	if w.Cwnd != c.lastWindow {
		// The sender set the window (recovery): dwnd stays, Reno's part
		// is the rest.
		c.dwnd = min(c.dwnd, max(win-1, 0))
		c.reno = win - c.dwnd
		c.lastWindow = w.Cwnd
	}
	return win
}

func (c *Compound) store(w *Window) {
	c.win.set(w, c.reno+c.dwnd)
	c.lastWindow = w.Cwnd
}

// OnAck implements Algorithm.
func (c *Compound) OnAck(w *Window, a Ack) {
	if a.RTT > 0 {
		if c.base == 0 || a.RTT < c.base {
			c.base = a.RTT
		}
		c.rtt = a.RTT
	}
	win := c.parts(w)
	if inSlowStart(w) {
		c.win.slowStart(w, a.Packets)
		c.reno, c.dwnd, c.lastWindow = float64(w.Cwnd), 0, w.Cwnd
		return
	}
	c.reno += float64(a.Packets) / win
	if w.Now >= c.roundEnd && c.rtt > 0 {
		c.dwnd = max(c.dwnd+c.DwndStep(win, Diff(win, c.base, c.rtt), c.dwnd), 0)
		c.roundEnd = w.Now + w.SRTT
	}
	c.store(w)
}

// OnLoss implements Algorithm.
func (c *Compound) OnLoss(w *Window) {
	win := c.parts(w)
	c.dwnd = max(win*(1-c.Beta)-c.reno/2, 0)
	c.reno /= 2
	w.Ssthresh = max(int(win*(1-c.Beta)), 2)
}

// OnRTO implements Algorithm.
func (c *Compound) OnRTO(w *Window) {
	c.OnLoss(w)
	c.reno, c.dwnd = 1, 0
	c.store(w)
}

// OnRecoveryExit implements Algorithm.
func (c *Compound) OnRecoveryExit(w *Window) { c.parts(w) }

// Info implements Algorithm.
func (c *Compound) Info() string { return fmt.Sprintf("cwnd:%.1f dwnd:%.1f", c.reno, c.dwnd) }
