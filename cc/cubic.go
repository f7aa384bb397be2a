package cc

import (
	"fmt"
	"math"
	"time"
)

// Cubic is CUBIC (RFC 9438). After a congestion event at window W_max the
// window follows W_cubic(t) = C*(t-K)^3 + W_max, K = cbrt((W_max -
// cwnd_epoch)/C) (equations 1 and 2), t the time since the epoch began (the
// first ACK after the event); per ACK the window moves by (target -
// cwnd)/cwnd toward target = W_cubic(t+RTT) clamped to [cwnd, 1.5 cwnd]
// (section 4.2). Where Reno would be faster it follows Reno's estimate
// W_est, growing alpha_cubic = 3(1-beta)/(1+beta) packets per window
// (section 4.3). On loss ssthresh = cwnd*beta (section 4.6) with fast
// convergence (section 4.7); on a timeout the window restarts from one packet
// (section 4.8). The window never drops below one packet, so a loss cannot
// leave the sender with nothing in flight and no way to send.
type Cubic struct {
	C               float64 // scaling constant (RFC 9438: 0.4)
	Beta            float64 // multiplicative decrease factor (RFC 9438: 0.7)
	FastConvergence bool    // release bandwidth to new flows (RFC 9438: on)

	win        window
	wMax       float64       // window before the last reduction
	k          float64       // seconds to reach wMax again
	epoch      time.Duration // start of the current epoch; -1 none
	cwndEpoch  float64
	wEst       float64
	lastTarget float64
}

func init() {
	Register("cubic", "CUBIC, RFC 9438", func() Algorithm { return NewCubic() })
}

// NewCubic is CUBIC with RFC 9438's parameters.
func NewCubic() *Cubic { return &Cubic{C: 0.4, Beta: 0.7, FastConvergence: true, epoch: -1} }

// W is W_cubic(t) in packets, t in seconds since the epoch (equation 1).
func (c *Cubic) W(t float64) float64 { return c.C*math.Pow(t-c.k, 3) + c.wMax }

// K is the time the window takes to reach W_max again (equation 2).
func (c *Cubic) K() float64 { return c.k }

// OnAck implements Algorithm.
func (c *Cubic) OnAck(w *Window, a Ack) {
	left := c.win.slowStart(w, a.Packets)
	if left == 0 || inSlowStart(w) {
		return
	}
	cwnd := c.win.sync(w)
	if c.epoch < 0 {
		c.epoch = w.Now
		c.cwndEpoch = cwnd
		c.wEst = cwnd
		if c.wMax < cwnd {
			// No reduction yet (CA from an ssthresh set elsewhere).
			c.wMax = cwnd
		}
		c.k = math.Cbrt((c.wMax - cwnd) / c.C)
	}
	rtt := w.SRTT
	if a.RTT > 0 {
		rtt = a.RTT
	}
	t := (w.Now - c.epoch).Seconds()
	target := min(max(c.W(t+rtt.Seconds()), cwnd), 1.5*cwnd)
	c.lastTarget = target
	alpha := 3 * (1 - c.Beta) / (1 + c.Beta)
	c.wEst += alpha * float64(left) / cwnd
	if c.W(t) < c.wEst {
		// Reno-friendly region (section 4.3).
		c.win.set(w, max(cwnd, c.wEst))
		return
	}
	c.win.set(w, cwnd+float64(left)*(target-cwnd)/cwnd)
}

func (c *Cubic) reduce(w *Window) float64 {
	cwnd := c.win.sync(w)
	if c.FastConvergence && cwnd < c.wMax {
		c.wMax = cwnd * (1 + c.Beta) / 2
	} else {
		c.wMax = cwnd
	}
	c.epoch = -1
	w.Ssthresh = max(int(cwnd*c.Beta), 2)
	return cwnd
}

// OnLoss implements Algorithm.
func (c *Cubic) OnLoss(w *Window) { c.reduce(w) }

// OnRTO implements Algorithm.
func (c *Cubic) OnRTO(w *Window) {
	c.reduce(w)
	c.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (c *Cubic) OnRecoveryExit(w *Window) { c.win.sync(w) }

// Info implements Algorithm.
func (c *Cubic) Info() string {
	return fmt.Sprintf("wmax:%.1f k:%.3fs west:%.1f target:%.1f", c.wMax, c.k, c.wEst, c.lastTarget)
}
