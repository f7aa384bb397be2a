package shape

import (
	"math"
	"testing"
	"time"
)

// TestSojournBuckets: every delay falls in a bucket whose middle is within
// 1/32 of it (or half a microsecond below 16 µs).
func TestSojournBuckets(t *testing.T) {
	for _, d := range []time.Duration{0, 3 * time.Microsecond, 15 * time.Microsecond, 16 * time.Microsecond,
		999 * time.Microsecond, 4 * time.Millisecond, 123456 * time.Microsecond, 3 * time.Second, 10 * time.Hour} {
		mid := sojournMid(sojournBucket(d))
		if err := math.Abs(float64(mid - d)); err > max(float64(d)/32, float64(time.Microsecond)) {
			t.Errorf("%v: bucket middle %v", d, mid)
		}
	}
	if i := sojournBucket(1 << 62); i != sojournBuckets-1 {
		t.Errorf("a huge delay went to bucket %d, want the last, %d", i, sojournBuckets-1)
	}
}

// TestSojourn: ten 1250-byte packets arriving at once at 10 Mbit/s wait
// 0, 1, ..., 9 ms for the link; Since counts only later packets.
func TestSojourn(t *testing.T) {
	h := newHarness(t, "rate 10mbit", "")
	h.sendN(t, 0, 10, 1250)
	h.clock.Advance(time.Second)
	s := h.ep.Sojourn(Egress)
	if s.Count() != 10 || s.Mean() != 4500*time.Microsecond {
		t.Fatalf("count %d mean %v, want 10 and 4.5ms", s.Count(), s.Mean())
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0, 0}, {0.5, 4 * time.Millisecond}, {1, 9 * time.Millisecond}} {
		if got := s.Quantile(tc.q); math.Abs(float64(got-tc.want)) > float64(tc.want)/32+float64(time.Microsecond) {
			t.Errorf("quantile %v: %v, want %v", tc.q, got, tc.want)
		}
	}
	h.sendN(t, 10, 2, 1250)
	h.clock.Advance(time.Second)
	later := h.ep.Sojourn(Egress).Since(s)
	if later.Count() != 2 || later.Mean() != 500*time.Microsecond {
		t.Errorf("the two later packets: count %d mean %v, want 2 and 0.5ms", later.Count(), later.Mean())
	}
	if h.ep.Sojourn(Ingress).Count() != 0 || h.ep.Sojourn(Direction(7)) != nil {
		t.Error("ingress counted packets, or an unknown direction gave a distribution")
	}
}
