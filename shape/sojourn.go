package shape

import (
	"math/bits"
	"time"
)

// Sojourn is the distribution of the time packets waited in a direction's
// queue before the link started sending them (their queueing delay), in
// microseconds, in buckets 1/16 of a power of two wide: a quantile is
// within about 3 % of the true one. Times come from the shaper's own
// schedule (when a packet arrived, when the link computed to be free),
// not from when a timer fired, so a loaded machine does not inflate them.
// Only a direction with a rate has a queue; packets the queue or its AQM
// dropped are not counted.
type Sojourn struct {
	counts [sojournBuckets]uint64
	n      uint64
	sum    time.Duration
}

const (
	sojournSub     = 16 // buckets per power of two
	sojournMaxLog  = 40 // 2^40 µs, about 12 days: the last bucket holds the rest
	sojournBuckets = sojournSub + (sojournMaxLog-4)*sojournSub
)

// sojournBucket is the bucket of d: microseconds below 16 exactly, then
// 16 per power of two.
func sojournBucket(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < sojournSub {
		return int(us)
	}
	shift := bits.Len64(us) - 5 // us>>shift is in [16, 32)
	i := sojournSub + shift*sojournSub + int(us>>shift) - sojournSub
	return min(i, sojournBuckets-1)
}

// sojournMid is the middle of bucket i.
func sojournMid(i int) time.Duration {
	if i < sojournSub {
		return time.Duration(i)*time.Microsecond + time.Microsecond/2
	}
	shift := (i - sojournSub) / sojournSub
	low := uint64(sojournSub+(i-sojournSub)%sojournSub) << shift
	return time.Duration(low)*time.Microsecond + time.Duration(uint64(1)<<shift)*time.Microsecond/2
}

func (h *Sojourn) add(d time.Duration) {
	h.counts[sojournBucket(d)]++
	h.n++
	h.sum += d
}

// Count is how many packets the distribution holds.
func (h *Sojourn) Count() uint64 { return h.n }

// Mean is the mean queueing delay (0 without packets).
func (h *Sojourn) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile is the queueing delay below which a fraction q of the packets
// waited (q in [0, 1]; 0 without packets).
func (h *Sojourn) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return sojournMid(i)
		}
	}
	return sojournMid(sojournBuckets - 1)
}

// Since is the distribution of the packets counted after earlier, an
// earlier copy of the same direction's distribution: a window of a run.
func (h *Sojourn) Since(earlier *Sojourn) *Sojourn {
	d := &Sojourn{n: h.n - earlier.n, sum: h.sum - earlier.sum}
	for i := range h.counts {
		d.counts[i] = h.counts[i] - earlier.counts[i]
	}
	return d
}
