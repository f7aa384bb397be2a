package shape

import (
	"math"
	"math/rand/v2"
	"time"
)

// redWeight is the weight of each new sample in RED's average queue size,
// the value Floyd and Jacobson recommend.
const redWeight = 0.002

// red is the state of Random Early Detection (Floyd and Jacobson, "Random
// Early Detection Gateways for Congestion Avoidance", 1993), consulted as a
// packet arrives at the queue.
type red struct {
	avg   float64 // average queue, in packets or bytes
	count int     // packets since the last drop while between thresholds
}

// drop updates the average with the queue q the packet finds and decides
// whether to drop it. A queue found empty after being idle for idle ages
// the average as if idle/tx packets of tx each had found it empty.
func (r *red) drop(p *REDParams, q float64, idle, tx time.Duration, rng *rand.Rand) bool {
	if q > 0 || idle <= 0 || tx <= 0 {
		r.avg += redWeight * (q - r.avg)
	} else {
		r.avg *= math.Pow(1-redWeight, float64(idle)/float64(tx))
	}
	lo, hi := float64(p.Min), float64(p.Max)
	switch {
	case r.avg < lo:
		r.count = -1
		return false
	case r.avg >= hi:
		r.count = 0
		return true
	}
	// Spread drops evenly: the probability grows with the packets let
	// through since the last drop.
	r.count++
	pb := p.MaxP * (r.avg - lo) / (hi - lo)
	pa := 1.0
	if d := 1 - float64(r.count)*pb; d > 0 {
		pa = pb / d
	}
	if rng.Float64() < pa {
		r.count = 0
		return true
	}
	return false
}

// codel is the state of Controlled Delay (RFC 8289), consulted as packets
// leave the queue for the link.
type codel struct {
	firstAbove time.Duration // zero: sojourn not above target
	dropNext   time.Duration
	count      uint32
	lastCount  uint32
	dropping   bool
}

func codelControlLaw(t, interval time.Duration, count uint32) time.Duration {
	return t + time.Duration(float64(interval)/math.Sqrt(float64(count)))
}

// dequeueCoDel takes the next packet for the link at now, dropping from
// the head as RFC 8289's dequeue does. It returns nil when the queue is
// empty or emptied by drops.
func (s *shaper) dequeueCoDel(now time.Duration) *entry {
	c := &s.codel
	interval := s.spec.AQM.codelInterval()
	e, okToDrop := s.codelPop(now)
	if e == nil {
		c.dropping = false
		return nil
	}
	if c.dropping {
		if !okToDrop {
			c.dropping = false
		}
		for c.dropping && now >= c.dropNext {
			s.dropAQM(e)
			c.count++
			if e, okToDrop = s.codelPop(now); e == nil || !okToDrop {
				c.dropping = false
			} else {
				c.dropNext = codelControlLaw(c.dropNext, interval, c.count)
			}
		}
		return e
	}
	if okToDrop {
		s.dropAQM(e)
		e, _ = s.codelPop(now)
		c.dropping = true
		// Resume near the drop rate that last controlled the queue if
		// that was recent.
		delta := c.count - c.lastCount
		c.count = 1
		if delta > 1 && now-c.dropNext < 16*interval {
			c.count = delta
		}
		c.dropNext = codelControlLaw(now, interval, c.count)
		c.lastCount = c.count
	}
	return e
}

// codelPop takes the head of the queue and says whether CoDel may drop
// it: its sojourn has stayed above target for an interval and more than
// one packet's worth is still queued.
func (s *shaper) codelPop(now time.Duration) (*entry, bool) {
	c := &s.codel
	e := s.popQueue()
	if e == nil {
		c.firstAbove = 0
		return nil, false
	}
	if now-e.arrival < s.spec.AQM.codelTarget() || s.queueBytes <= s.maxPacket {
		c.firstAbove = 0
		return e, false
	}
	if c.firstAbove == 0 {
		c.firstAbove = now + s.spec.AQM.codelInterval()
		return e, false
	}
	return e, now >= c.firstAbove
}
