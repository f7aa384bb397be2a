package shape

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/internal/realtime"
	"github.com/ustack/ustack/internal/testwait"
)

// harness is an Endpoint on a manual clock over a fake lower endpoint,
// with a recorder as the stack above it.
type harness struct {
	clock *faketime.ManualClock
	ep    *Endpoint
	lower *fakeLower
	upper *recorder
	pkts  packets
	t0    tcpip.MonotonicTime
}

func newHarness(t *testing.T, egress, ingress string) *harness {
	t.Helper()
	h := &harness{clock: faketime.NewManualClock()}
	h.lower = &fakeLower{recorder: recorder{clock: h.clock}}
	ep, err := New(h.lower, h.clock, mustParse(t, egress), mustParse(t, ingress))
	if err != nil {
		t.Fatal(err)
	}
	h.ep = ep
	h.upper = &recorder{clock: h.clock, ep: ep}
	ep.Attach(h.upper)
	h.t0 = h.clock.NowMonotonic()
	t.Cleanup(func() {
		h.ep.Close()
		h.pkts.checkReleased(t)
	})
	return h
}

// since is the time of d after the start of the test.
func (h *harness) since(d delivery) time.Duration { return d.at.Sub(h.t0) }

// sendN sends n packets of size bytes now, with ids from first.
func (h *harness) sendN(t *testing.T, first uint64, n, size int) {
	t.Helper()
	for i := range n {
		send(t, h.ep, h.pkts.make(first+uint64(i), size))
	}
}

func TestRateDepartures(t *testing.T) {
	for _, tc := range []struct {
		spec string
		size int
		gap  time.Duration // between departures
	}{
		{"rate 10mbit", 1250, time.Millisecond},
		{"rate 100mbit", 1500, 120 * time.Microsecond},
		{"rate 1gbit", 1514, 12112 * time.Nanosecond},
		{"rate 10mbit overhead 24", 1250, 1019200 * time.Nanosecond},
		{"rate 10mbit overhead -250", 1250, 800 * time.Microsecond},
		// 1250 bytes are 27 cells of 48, each 53 bytes on the wire.
		{"rate 10mbit cellsize 48 celloverhead 5", 1250, 27 * 53 * 800 * time.Nanosecond},
		{"rate 1mbps", 1000, time.Millisecond},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			h := newHarness(t, tc.spec, "")
			h.sendN(t, 0, 10, tc.size)
			h.clock.Advance(time.Second)
			got := h.lower.deliveries()
			if len(got) != 10 {
				t.Fatalf("%d packets delivered, want 10", len(got))
			}
			for i, d := range got {
				if want := time.Duration(i+1) * tc.gap; h.since(d) != want || d.id != uint64(i) {
					t.Errorf("packet %d (id %d) left at %v, want %v", i, d.id, h.since(d), want)
				}
			}
		})
	}
}

// TestRateAccuracy offers more than the rate, in packets of random sizes
// arriving at random times, and checks that what leaves does so at the
// rate: the bits sent over the time from the first departure to the last.
func TestRateAccuracy(t *testing.T) {
	for _, rate := range []float64{10e6, 100e6} {
		t.Run(fmt.Sprintf("%gMbit", rate/1e6), func(t *testing.T) {
			h := newHarness(t, fmt.Sprintf("rate %gmbit limit 100000", rate/1e6), "")
			rng := rand.New(rand.NewPCG(1, 2))
			// A backlog first, so the link never idles, then 1.2 times
			// the rate for a second.
			for range 200 {
				send(t, h.ep, h.pkts.make(0, 1500))
			}
			var offered int
			for offered*8 < int(1.2*rate) {
				size := 64 + rng.IntN(1451)
				offered += size
				send(t, h.ep, h.pkts.make(0, size))
				h.clock.Advance(time.Duration(rng.Int64N(int64(float64(size*8) / rate / 1.2 * 2e9))))
			}
			h.clock.Advance(2 * time.Second)
			got := h.lower.deliveries()
			bits := 0
			for _, d := range got[1:] {
				bits += len(d.data) * 8
			}
			span := got[len(got)-1].at.Sub(got[0].at)
			measured := float64(bits) / span.Seconds()
			if math.Abs(measured/rate-1) > 0.001 {
				t.Errorf("%d packets left at %.4g bit/s, want %.4g", len(got), measured, rate)
			}
			if st := h.ep.Stats(Egress); st.Dropped() != 0 || st.SentPackets != uint64(len(got)) {
				t.Errorf("stats %+v, want no drops and %d sent", st, len(got))
			}
		})
	}
}

// TestRateRealClock releases a burst at 100 Mbit/s on the real clock: the
// departure times come from the rate, so a late timer costs a batch's
// latency, not rate. The frames are large (16 KB, 760 a second) so that
// the test does not measure how fast the machine moves packets; the
// benchmarks do.
func TestRateRealClock(t *testing.T) {
	// The release goroutine must run when its timer fires, however busy
	// the machine is with other work: that is the emulator's accuracy.
	realtime.Raise(t)
	const n, size, rate = 1600, 16000, 100e6
	clock := tcpip.NewStdClock()
	lower := &fakeLower{recorder: recorder{clock: clock}}
	ep, err := New(lower, clock, mustParse(t, "rate 100mbit limit 2000"), Spec{})
	if err != nil {
		t.Fatal(err)
	}
	var pk packets
	defer pk.checkReleased(t)
	defer ep.Close()
	for i := range n {
		send(t, ep, pk.make(uint64(i), size))
	}
	testwait.For(t, "every packet to leave", func() bool { return lower.len() >= n })
	got := lower.deliveries()
	var p []progress
	for i, d := range got {
		p = append(p, progress{d.at.Sub(got[0].at), i * size})
	}
	measured := rateOf(p)
	t.Logf("%d packets of %d bytes at %.2f Mbit/s (want 100); first to last %.2f Mbit/s",
		n, size, measured/1e6, float64((n-1)*size*8)/got[n-1].at.Sub(got[0].at).Seconds()/1e6)
	if math.Abs(measured/rate-1) > 0.03 {
		t.Errorf("measured %.4g bit/s, want %.4g within 3%%", measured, rate)
	}
	for i, d := range got {
		if d.id != uint64(i) {
			t.Fatalf("packet %d left as %dth", d.id, i)
		}
	}
}

func TestRateAndDelay(t *testing.T) {
	h := newHarness(t, "rate 10mbit delay 25ms", "")
	h.sendN(t, 0, 5, 1250)
	h.clock.Advance(time.Second)
	for i, d := range h.lower.deliveries() {
		if want := 25*time.Millisecond + time.Duration(i+1)*time.Millisecond; h.since(d) != want {
			t.Errorf("packet %d arrived at %v, want %v", i, h.since(d), want)
		}
	}
	// An echo request's frame (98 bytes) when the link is idle again.
	start := h.clock.NowMonotonic()
	send(t, h.ep, h.pkts.make(9, 98))
	h.clock.Advance(time.Second)
	got := h.lower.deliveries()
	if d := got[len(got)-1].at.Sub(start); d != 25*time.Millisecond+78400*time.Nanosecond {
		t.Errorf("98-byte frame took %v, want 25.0784ms", d)
	}
}

func TestQueueLimit(t *testing.T) {
	for _, tc := range []struct {
		spec       string
		sizes      []int
		delivered  []uint64 // ids
		queueDrops uint64
	}{
		// One packet goes on the wire at once, five wait; the rest find
		// the queue full.
		{"rate 1mbit limit 5", repeat(1000, 20), ids(0, 1, 2, 3, 4, 5), 14},
		{"rate 1mbit bytes 5000", repeat(1000, 20), ids(0, 1, 2, 3, 4, 5), 14},
		{"rate 1mbit limit 100 bytes 5000", []int{1000, 3000, 1500, 600, 1000, 100}, ids(0, 1, 2, 5), 2},
		{"rate 1mbit limit 2 bytes 5000", []int{1000, 100, 100, 100}, ids(0, 1, 2), 1},
		{"rate 1mbit", repeat(100, 1100), seq(1001), 99},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			h := newHarness(t, tc.spec, "")
			for i, size := range tc.sizes {
				send(t, h.ep, h.pkts.make(uint64(i), size))
			}
			st := h.ep.Stats(Egress)
			if want := len(tc.delivered) - 1; st.QueuePackets != want {
				t.Errorf("%d packets queued, want %d", st.QueuePackets, want)
			}
			h.clock.Advance(time.Hour)
			var got []uint64
			for _, d := range h.lower.deliveries() {
				got = append(got, d.id)
			}
			if !slices.Equal(got, tc.delivered) {
				t.Errorf("delivered %v, want %v", got, tc.delivered)
			}
			if st := h.ep.Stats(Egress); st.DroppedQueue != tc.queueDrops || st.DroppedLoss+st.DroppedAQM != 0 || st.QueuePackets != 0 {
				t.Errorf("stats %+v, want %d queue drops and an empty queue", st, tc.queueDrops)
			}
		})
	}
}

func repeat(size, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func ids(v ...uint64) []uint64 { return v }

func seq(n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i)
	}
	return s
}

// holdQueue keeps q packets of 1250 bytes waiting in front of a 1 Mbit/s
// link (10ms each) for n departures: it sends one packet per departure,
// and another for each one the queue drops, and returns the number of
// packets offered and dropped early after the first warm departures.
func holdQueue(t *testing.T, h *harness, q, warm, n int) (offered, dropped uint64) {
	t.Helper()
	h.sendN(t, 0, q+1, 1250) // one on the wire, q waiting
	var dropped0, offered0 uint64
	for i := range warm + n {
		if i == warm {
			dropped0, offered0 = h.ep.Stats(Egress).DroppedAQM, offered
		}
		h.clock.Advance(10 * time.Millisecond)
		for tries := 0; h.ep.Stats(Egress).QueuePackets < q; tries++ {
			if tries == 1000 {
				t.Fatalf("queue cannot be refilled to %d", q)
			}
			send(t, h.ep, h.pkts.make(uint64(i), 1250))
			offered++
		}
	}
	return offered - offered0, h.ep.Stats(Egress).DroppedAQM - dropped0
}

func TestRED(t *testing.T) {
	const minTh, maxTh, maxP = 10, 30, 0.1
	for _, tc := range []struct {
		name string
		q    int
		spec string
	}{
		{"below min", 5, "rate 1mbit queue red 10 30 10%"},
		{"between", 20, "rate 1mbit queue red 10 30 10%"},
		{"between, in bytes", 20, "rate 1mbit queue red 12500b 37500b 10%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.spec, "")
			offered, dropped := holdQueue(t, h, tc.q, 3000, 20000)
			got := float64(dropped) / float64(offered)
			// Each arrival finds q-1 packets (one has just left), so the
			// average settles there. Between the thresholds RED spaces
			// its drops evenly: the packets from one drop to the next
			// are uniform on 1..1/pb-1, so a fraction 2pb is dropped.
			pb := maxP * float64(tc.q-1-minTh) / float64(maxTh-minTh)
			want := max(0, 2*pb)
			t.Logf("queue %d: %d of %d dropped (%.4f, want %.4f)", tc.q, dropped, offered, got, want)
			if math.Abs(got-want) > 0.15*want || (want == 0 && dropped != 0) {
				t.Errorf("dropped %.4f of arrivals, want %.4f", got, want)
			}
			if st := h.ep.Stats(Egress); st.DroppedQueue != 0 {
				t.Errorf("%d tail drops, want none", st.DroppedQueue)
			}
		})
	}
	t.Run("above max", func(t *testing.T) {
		var r red
		p := &REDParams{Min: minTh, Max: maxTh, MaxP: maxP}
		rng := rand.New(rand.NewPCG(1, 1))
		for range 5000 {
			r.drop(p, 40, 0, 0, rng)
		}
		for i := range 100 {
			if !r.drop(p, 40, 0, 0, rng) {
				t.Fatalf("arrival %d let in with an average queue of %.1f above max %d", i, r.avg, maxTh)
			}
		}
		// Idle time ages the average: 2000 packet times of nothing
		// bring it below min.
		if r.drop(p, 0, 2000*time.Millisecond, time.Millisecond, rng) || r.avg >= minTh {
			t.Errorf("average %.2f after a long idle time, want below %d", r.avg, minTh)
		}
	})
}

// TestCoDel keeps a standing queue and checks that CoDel starts dropping
// only after the sojourn has stayed above target for an interval, drops
// ever faster while it stays there, and stops once the queue is short
// again.
func TestCoDel(t *testing.T) {
	t.Run("short queue", func(t *testing.T) {
		h := newHarness(t, "rate 1mbit queue codel", "")
		// One packet waits up to 10ms, above the 5ms target, but CoDel
		// does not drop the last packet's worth of queue.
		holdQueue(t, h, 1, 0, 2000)
		if st := h.ep.Stats(Egress); st.DroppedAQM != 0 {
			t.Errorf("%d early drops with one packet queued", st.DroppedAQM)
		}
	})
	t.Run("standing queue", func(t *testing.T) {
		// 10 Mbit/s: 1250 bytes take 1ms. Start with 20 queued and offer
		// exactly the rate: the queue only shrinks by CoDel's drops.
		h := newHarness(t, "rate 10mbit queue codel", "")
		h.sendN(t, 0, 21, 1250)
		var dropsAt []time.Duration
		last := uint64(0)
		for i := range 3000 {
			h.clock.Advance(time.Millisecond)
			send(t, h.ep, h.pkts.make(uint64(100+i), 1250))
			if d := h.ep.Stats(Egress).DroppedAQM; d != last {
				for range d - last {
					dropsAt = append(dropsAt, h.clock.NowMonotonic().Sub(h.t0))
				}
				last = d
			}
		}
		t.Logf("drops at %v", dropsAt)
		st := h.ep.Stats(Egress)
		if len(dropsAt) < 10 {
			t.Fatalf("%d drops, want the queue brought down to the 5ms target (about 15)", len(dropsAt))
		}
		// The sojourn is above 5ms from the start; the first drop comes
		// one interval later.
		if dropsAt[0] < 100*time.Millisecond || dropsAt[0] > 110*time.Millisecond {
			t.Errorf("first drop at %v, want one interval (100ms) after the queue formed", dropsAt[0])
		}
		// While dropping, the gaps shrink as interval/sqrt(count).
		for i := 2; i < min(len(dropsAt), 6); i++ {
			if gap, prev := dropsAt[i]-dropsAt[i-1], dropsAt[i-1]-dropsAt[i-2]; gap > prev {
				t.Errorf("drop gaps grow: %v then %v", prev, gap)
			}
		}
		if dropsAt[len(dropsAt)-1] > time.Second {
			t.Errorf("still dropping at %v with the queue at %d packets", dropsAt[len(dropsAt)-1], st.QueuePackets)
		}
		if st.QueuePackets > 6 || st.DroppedQueue != 0 {
			t.Errorf("queue %d packets, %d tail drops; want at most ~5ms of queue and no tail drops", st.QueuePackets, st.DroppedQueue)
		}
	})
}

func TestReorderGap(t *testing.T) {
	h := newHarness(t, "delay 10ms reorder 100% gap 5", "")
	for i := range 20 {
		send(t, h.ep, h.pkts.make(uint64(i), 100))
		h.clock.Advance(time.Millisecond)
	}
	h.clock.Advance(time.Second)
	var got []uint64
	for _, d := range h.lower.deliveries() {
		// A reordered packet leaves when it is sent: i ms.
		early := h.since(d) == time.Duration(d.id)*time.Millisecond
		if early != (d.id%5 == 4) {
			t.Errorf("packet %d left at %v", d.id, h.since(d))
		}
		got = append(got, d.id)
	}
	want := []uint64{4, 9, 0, 1, 2, 3, 14, 5, 6, 7, 8, 19, 10, 11, 12, 13, 15, 16, 17, 18}
	if !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if st := h.ep.Stats(Egress); st.Reordered != 4 {
		t.Errorf("%d reordered, want 4", st.Reordered)
	}
}

func TestReorderGapWithRate(t *testing.T) {
	// With a rate the reordered packet still waits for the link, at the
	// head of the queue.
	h := newHarness(t, "rate 10mbit delay 10ms reorder 100% gap 3", "")
	h.sendN(t, 0, 6, 1250)
	h.clock.Advance(time.Second)
	var got []string
	for _, d := range h.lower.deliveries() {
		got = append(got, fmt.Sprintf("%d@%v", d.id, h.since(d)))
	}
	// 0 goes on the wire at once (0-1ms, then 10ms of delay); 1 waits;
	// 2 goes to the head of the queue, ahead of 1; 3 and 4 wait; 5 goes
	// to the head, ahead of 2. Reordered packets skip only the delay.
	want := []string{"5@2ms", "2@3ms", "0@11ms", "1@14ms", "3@15ms", "4@16ms"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestReorderProbability(t *testing.T) {
	const n = 100000
	h := newHarness(t, "delay 10ms reorder 25% seed 3", "")
	for i := range n {
		send(t, h.ep, h.pkts.make(uint64(i), 64))
	}
	h.clock.Advance(time.Second)
	st := h.ep.Stats(Egress)
	t.Logf("reorder 25%%: %d of %d packets sent ahead", st.Reordered, n)
	if f := float64(st.Reordered) / n; f < 0.24 || f > 0.26 {
		t.Errorf("%.4f reordered, want 0.25", f)
	}
	if got := h.lower.len(); got != n {
		t.Errorf("%d delivered, want %d", got, n)
	}
}

// TestJitterDistributions draws a million delays from each distribution
// and compares their mean and spread with the distribution's own (for the
// tables, the table's), and their shape with what the distribution is.
func TestJitterDistributions(t *testing.T) {
	const n = 1000000
	mu, sigma := 50*time.Millisecond, 10*time.Millisecond
	for _, d := range []Distribution{Uniform, Normal, Pareto, ParetoNormal} {
		t.Run(d.String(), func(t *testing.T) {
			spec := mustParse(t, fmt.Sprintf("delay 50ms 10ms distribution %s", d))
			rng := rand.New(rand.NewPCG(1, 1))
			delays := make([]float64, n)
			for i := range delays {
				// In units of the jitter, from the delay.
				delays[i] = float64(sampleDelay(&spec, rng)-mu) / float64(sigma)
			}
			mean, sd := moments(delays)
			wantMean, wantSD := 0.0, 1/math.Sqrt(3) // uniform over ±1
			if d != Uniform {
				tab := make([]float64, distTableSize)
				for i, v := range distTables()[d] {
					tab[i] = float64(v) / distScale
				}
				wantMean, wantSD = moments(tab)
			}
			slices.Sort(delays)
			t.Logf("%s: mean %+.4f sd %.4f (table %+.4f %.4f); min %.3f median %.3f max %.3f, in jitters from the delay",
				d, mean, sd, wantMean, wantSD, delays[0], delays[n/2], delays[n-1])
			if math.Abs(mean-wantMean) > 0.005 || math.Abs(sd/wantSD-1) > 0.01 {
				t.Errorf("mean %+.4f sd %.4f, want %+.4f %.4f", mean, sd, wantMean, wantSD)
			}
			lo, med, hi := delays[0], delays[n/2], delays[n-1]
			switch d {
			case Uniform:
				if lo < -1 || hi >= 1 {
					t.Errorf("uniform jitter from %.3f to %.3f, want within [-1, 1)", lo, hi)
				}
			case Normal:
				within := 0
				for _, v := range delays {
					if math.Abs(v) <= 1 {
						within++
					}
				}
				if f := float64(within) / n; math.Abs(f-0.6827) > 0.01 || math.Abs(sd-1) > 0.02 {
					t.Errorf("normal: %.4f within one sigma, sd %.4f; want 0.6827 and 1", f, sd)
				}
			case Pareto:
				// Pareto (shape 3) shifted to mean 0: nothing below -2/3,
				// a long right tail cut at 4.
				if lo < -0.67 || med >= mean || hi < 3 || hi > 4 {
					t.Errorf("pareto: min %.3f median %.3f max %.3f", lo, med, hi)
				}
			case ParetoNormal:
				if med >= mean || hi < 2 {
					t.Errorf("paretonormal: median %.3f max %.3f, want a right tail", med, hi)
				}
			}
		})
	}
}

// TestJitterThroughEndpoint checks that each packet through an Endpoint
// is delayed by exactly the next draw of its direction's generator.
func TestJitterThroughEndpoint(t *testing.T) {
	const n = 5000
	for _, d := range []Distribution{Uniform, Normal, Pareto, ParetoNormal} {
		t.Run(d.String(), func(t *testing.T) {
			spec := mustParse(t, fmt.Sprintf("delay 50ms 10ms distribution %s jitter-reorder seed 9", d))
			h := newHarness(t, spec.String(), "")
			want := map[uint64]time.Duration{}
			rng := rngFor(9, Egress)
			for i := range n {
				at := time.Duration(i) * 10 * time.Microsecond
				want[uint64(i)] = at + sampleDelay(&spec, rng)
				send(t, h.ep, h.pkts.make(uint64(i), 64))
				h.clock.Advance(10 * time.Microsecond)
			}
			h.clock.Advance(time.Second)
			got := h.lower.deliveries()
			if len(got) != n {
				t.Fatalf("%d delivered, want %d", len(got), n)
			}
			for _, g := range got {
				if h.since(g) != want[g.id] {
					t.Fatalf("packet %d arrived at %v, want %v", g.id, h.since(g), want[g.id])
				}
			}
		})
	}
}

func moments(v []float64) (mean, sd float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)))
}

func TestJitterOrder(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		reorder bool
	}{
		{"delay 20ms 10ms seed 1", false},
		{"delay 20ms 10ms distribution pareto seed 1", false},
		{"rate 100mbit delay 20ms 10ms seed 1", false},
		{"delay 20ms 10ms jitter-reorder seed 1", true},
		{"rate 100mbit delay 20ms 10ms jitter-reorder seed 1", true},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			h := newHarness(t, tc.spec, "")
			// One packet every 100us, much less than the jitter.
			for i := range 10000 {
				send(t, h.ep, h.pkts.make(uint64(i), 100))
				h.clock.Advance(100 * time.Microsecond)
			}
			h.clock.Advance(time.Second)
			got := h.lower.deliveries()
			if len(got) != 10000 {
				t.Fatalf("%d delivered", len(got))
			}
			outOfOrder := 0
			for i := 1; i < len(got); i++ {
				if got[i].id < got[i-1].id {
					outOfOrder++
				}
				if got[i].at.Before(got[i-1].at) {
					t.Fatalf("deliveries go back in time at %d", i)
				}
			}
			t.Logf("%d of %d out of order", outOfOrder, len(got))
			if (outOfOrder > 0) != tc.reorder {
				t.Errorf("%d packets out of order, want reordering %v", outOfOrder, tc.reorder)
			}
		})
	}
}

func TestLossRandom(t *testing.T) {
	const n = 100000
	h := newHarness(t, "loss 1% seed 1", "")
	for i := range n {
		send(t, h.ep, h.pkts.make(uint64(i), 64))
	}
	got := h.lower.len()
	loss := 1 - float64(got)/n
	t.Logf("random loss 1%%: %d of %d lost (%.3f%%)", n-got, n, loss*100)
	if loss < 0.009 || loss > 0.011 {
		t.Errorf("loss %.4f%%, want 0.9%% to 1.1%%", loss*100)
	}
	if st := h.ep.Stats(Egress); st.DroppedLoss != uint64(n-got) || st.SentPackets != uint64(got) {
		t.Errorf("stats %+v, want %d lost and %d sent", st, n-got, got)
	}
}

// TestLossModels draws a million packets from each Markov model and
// compares the loss rate and mean burst length with the models' own.
func TestLossModels(t *testing.T) {
	const n = 1000000
	for _, tc := range []struct {
		spec       string
		loss, mean float64 // expected; mean burst length, 0 if not checked
	}{
		// Simple Gilbert: lose every packet in the bad state, bursts of
		// 1/r on average.
		{"loss gemodel 1% 30%", 0.01 / 0.31, 1 / 0.3},
		{"loss gemodel 2% 20% 80% 1%", (0.02*0.8 + 0.2*0.01) / 0.22, 0},
		// r = 1-p and p31 = 1-p13 (the defaults) make Bernoulli loss:
		// bursts of 1/(1-p).
		{"loss gemodel 5%", 0.05, 1 / 0.95},
		{"loss state 1%", 0.01, 1 / 0.99},
		{"loss state 1% 30%", 0.01 / 0.31, 1 / 0.3},
		{"loss state 1% 30% 10% 5% 0.5%", fourStateLoss(FourState{0.01, 0.3, 0.1, 0.05, 0.005}), 0},
		{"loss 3%", 0.03, 1 / 0.97},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			spec := mustParse(t, tc.spec)
			rng := rand.New(rand.NewPCG(7, 7))
			st := stateGood
			lost, bursts, run := 0, 0, 0
			for range n {
				if st.lose(&spec.Loss, rng) {
					lost++
					if run == 0 {
						bursts++
					}
					run++
				} else {
					run = 0
				}
			}
			loss, mean := float64(lost)/n, float64(lost)/float64(bursts)
			want := "not checked"
			if tc.mean != 0 {
				want = fmt.Sprintf("want %.3f", tc.mean)
			}
			t.Logf("%s: loss %.4f%% (want %.4f%%), mean burst %.3f (%s)", tc.spec, loss*100, tc.loss*100, mean, want)
			if math.Abs(loss/tc.loss-1) > 0.03 {
				t.Errorf("loss %.4f%%, want %.4f%%", loss*100, tc.loss*100)
			}
			if tc.mean != 0 && math.Abs(mean/tc.mean-1) > 0.03 {
				t.Errorf("mean burst %.3f, want %.3f", mean, tc.mean)
			}
		})
	}
}

// fourStateLoss is the stationary loss of the 4-state model: the share of
// time the chain spends in states 3 and 4, found by iterating it.
func fourStateLoss(f FourState) float64 {
	pi := [5]float64{1: 1}
	for range 100000 {
		var n [5]float64
		n[1] += pi[1] * (1 - f.P13 - f.P14)
		n[3] += pi[1] * f.P13
		n[4] += pi[1] * f.P14
		n[2] += pi[2] * (1 - f.P23)
		n[3] += pi[2] * f.P23
		n[2] += pi[3] * f.P32
		n[1] += pi[3] * f.P31
		n[3] += pi[3] * (1 - f.P31 - f.P32)
		n[1] += pi[4]
		pi = n
	}
	return pi[3] + pi[4]
}

func TestDuplicate(t *testing.T) {
	const n = 100000
	h := newHarness(t, "duplicate 10% seed 2", "")
	for i := range n {
		send(t, h.ep, h.pkts.make(uint64(i), 100))
	}
	got := h.lower.deliveries()
	st := h.ep.Stats(Egress)
	t.Logf("duplicate 10%%: %d of %d packets sent twice", st.Duplicated, n)
	if f := float64(st.Duplicated) / n; f < 0.095 || f > 0.105 {
		t.Errorf("%.4f duplicated, want 0.10", f)
	}
	if len(got) != n+int(st.Duplicated) {
		t.Fatalf("%d delivered, want %d + %d copies", len(got), n, st.Duplicated)
	}
	seen := map[uint64]int{}
	for i, d := range got {
		seen[d.id]++
		if i > 0 && d.id < got[i-1].id {
			t.Fatalf("copy of %d delivered after %d", got[i-1].id, d.id)
		}
		if want := payload(d.id, 100); string(d.data) != string(want) {
			t.Fatalf("copy of %d differs from the original", d.id)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct packets delivered, want %d", len(seen), n)
	}
}

// TestDuplicateAndLoss checks netem's arithmetic: a loss takes one copy
// of a duplicated packet, and the copy meets the loss model again.
func TestDuplicateAndLoss(t *testing.T) {
	const n = 100000
	h := newHarness(t, "duplicate 50% loss 50% seed 4", "")
	for i := range n {
		send(t, h.ep, h.pkts.make(uint64(i), 64))
	}
	// P(original path out) = 1 - 0.5·0.5; P(copy out) = 0.5·0.5·0.5.
	want := n * (0.75 + 0.125)
	if got := float64(h.lower.len()); math.Abs(got/want-1) > 0.01 {
		t.Errorf("%v delivered, want %v", got, want)
	}
}

func TestCorrupt(t *testing.T) {
	const n, size = 100000, 200
	h := newHarness(t, "corrupt 1% seed 5", "")
	// The sender's own buffers must stay intact: keep some to check.
	var kept []*stack.PacketBuffer
	for i := range n {
		p := h.pkts.make(uint64(i), size)
		if i%1000 == 0 {
			kept = append(kept, p.IncRef())
		}
		send(t, h.ep, p)
	}
	got := h.lower.deliveries()
	if len(got) != n {
		t.Fatalf("%d delivered, want %d", len(got), n)
	}
	corrupted := 0
	for i, d := range got {
		want := payload(uint64(i), size)
		bits := 0
		for j := range want {
			bits += popcount(want[j] ^ d.data[j])
		}
		switch bits {
		case 0:
		case 1:
			corrupted++
		default:
			t.Fatalf("packet %d has %d bits flipped", i, bits)
		}
	}
	st := h.ep.Stats(Egress)
	t.Logf("corrupt 1%%: %d of %d packets have one bit flipped", corrupted, n)
	if f := float64(corrupted) / n; f < 0.009 || f > 0.011 || uint64(corrupted) != st.Corrupted {
		t.Errorf("%d corrupted (stats %d), want 1%% of %d", corrupted, st.Corrupted, n)
	}
	for _, p := range kept {
		b := p.ToBuffer()
		data := b.Flatten()
		b.Release()
		if want := payload(binary.BigEndian.Uint64(data), size); string(data) != string(want) {
			t.Errorf("the sender's packet was changed")
		}
		p.DecRef()
	}
}

func popcount(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

func TestSeedReproduces(t *testing.T) {
	pattern := func(egress, ingress string) (string, string) {
		h := newHarness(t, egress, ingress)
		for i := range 2000 {
			send(t, h.ep, h.pkts.make(uint64(i), 64))
			receive(h.ep, h.pkts.make(uint64(i), 64))
		}
		var e, in strings.Builder
		for _, d := range h.lower.deliveries() {
			fmt.Fprint(&e, d.id, " ")
		}
		for _, d := range h.upper.deliveries() {
			fmt.Fprint(&in, d.id, " ")
		}
		return e.String(), in.String()
	}
	a1, b1 := pattern("loss 10% seed 42", "loss 10% seed 42")
	a2, b2 := pattern("loss 10% seed 42", "loss 10% seed 42")
	a3, _ := pattern("loss 10% seed 43", "")
	if a1 != a2 || b1 != b2 {
		t.Error("the same seed lost different packets")
	}
	if a1 == a3 {
		t.Error("different seeds lost the same packets")
	}
	if a1 == b1 {
		t.Error("egress and ingress with the same seed lost the same packets")
	}
	// Without a seed one is chosen and reported.
	h := newHarness(t, "loss 10%", "")
	if st := h.ep.Stats(Egress); !strings.Contains(st.String(), fmt.Sprintf("(seed %d)", st.Seed)) {
		t.Errorf("stats do not report the seed in use:\n%s", st)
	}
}

func TestIngress(t *testing.T) {
	h := newHarness(t, "", "rate 10mbit delay 25ms")
	for i := range 3 {
		receive(h.ep, h.pkts.make(uint64(i), 1250))
	}
	if n := h.upper.len(); n != 0 {
		t.Fatalf("%d delivered before their time", n)
	}
	h.clock.Advance(time.Second)
	got := h.upper.deliveries()
	for i, d := range got {
		if want := 25*time.Millisecond + time.Duration(i+1)*time.Millisecond; h.since(d) != want {
			t.Errorf("packet %d delivered at %v, want %v", i, h.since(d), want)
		}
	}
	if len(got) != 3 || h.lower.len() != 0 {
		t.Errorf("%d delivered up, %d written down; want 3 and 0", len(got), h.lower.len())
	}
	if st := h.ep.Stats(Ingress); st.SentPackets != 3 || st.SentBytes != 3*1250 {
		t.Errorf("ingress stats %+v", st)
	}
}

func TestPassThrough(t *testing.T) {
	h := newHarness(t, "seed 1", "")
	h.sendN(t, 0, 10, 100)
	receive(h.ep, h.pkts.make(1, 100))
	if h.lower.len() != 10 || h.upper.len() != 1 {
		t.Fatalf("%d written, %d delivered; want 10 and 1 at once", h.lower.len(), h.upper.len())
	}
	if st := h.ep.Stats(Egress); st.SentPackets != 10 || st.SentBytes != 1000 {
		t.Errorf("egress stats %+v", st)
	}
}

func TestSetLive(t *testing.T) {
	h := newHarness(t, "rate 1mbit delay 5ms", "")
	h.sendN(t, 0, 6, 1250) // 10ms each at 1 Mbit/s
	h.clock.Advance(25 * time.Millisecond)
	// Two have left the link (at 10 and 20ms), the third is on it until
	// 30ms; the rest go at the new rate, with the delay drawn on arrival.
	if err := h.ep.Set(Egress, mustParse(t, "rate 10mbit delay 50ms")); err != nil {
		t.Fatal(err)
	}
	h.sendN(t, 6, 1, 1250) // arrives at 25ms, behind 3..5, with 50ms
	h.clock.Advance(time.Second)
	var got []string
	for _, d := range h.lower.deliveries() {
		got = append(got, fmt.Sprintf("%d@%v", d.id, h.since(d)))
	}
	want := []string{"0@15ms", "1@25ms", "2@35ms", "3@36ms", "4@37ms", "5@38ms", "6@84ms"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if s := h.ep.Spec(Egress).String(); s != "rate 10mbit delay 50ms" {
		t.Errorf("Spec = %q", s)
	}
	if err := h.ep.Set(Egress, Spec{Delay: -1}); err == nil || !strings.HasPrefix(err.Error(), "egress: delay:") {
		t.Errorf("Set with a bad spec: %v", err)
	}
	if err := h.ep.Set(Direction(7), Spec{}); err == nil {
		t.Error("Set accepted an unknown direction")
	}
}

// TestSetEmptyKeepsOrder: packets sent after the spec is cleared wait for
// the ones still inside, then pass straight through.
func TestSetEmptyKeepsOrder(t *testing.T) {
	h := newHarness(t, "delay 10ms", "")
	h.sendN(t, 0, 3, 100)
	if err := h.ep.Set(Egress, Spec{}); err != nil {
		t.Fatal(err)
	}
	h.sendN(t, 3, 2, 100)
	if n := h.lower.len(); n != 0 {
		t.Fatalf("%d packets overtook the delayed ones", n)
	}
	h.clock.Advance(10 * time.Millisecond)
	h.sendN(t, 5, 1, 100)
	var got []uint64
	for _, d := range h.lower.deliveries() {
		got = append(got, d.id)
	}
	if !slices.Equal(got, seq(6)) {
		t.Errorf("order %v", got)
	}
	if !h.ep.dirs[Egress].bypass.Load() {
		t.Error("not passing through once empty")
	}
}

func TestGSOAdvertised(t *testing.T) {
	h := newHarness(t, "", "delay 1ms")
	h.lower.gso = stack.HostGSOSupported
	if h.ep.SupportedGSO() != stack.HostGSOSupported || h.ep.GSOMaxSize() != 1<<16 {
		t.Error("GSO hidden with an empty egress spec")
	}
	h.ep.Set(Egress, mustParse(t, "loss 1%"))
	if h.ep.SupportedGSO() != stack.GSONotSupported || h.ep.GSOMaxSize() != 0 {
		t.Error("GSO advertised while shaping")
	}
	h.ep.Set(Egress, Spec{})
	if h.ep.SupportedGSO() != stack.HostGSOSupported {
		t.Error("GSO not advertised again after clearing the spec")
	}
}

func TestChecksumOffload(t *testing.T) {
	rx, tx := stack.CapabilityRXChecksumOffload, stack.CapabilityTXChecksumOffload
	for _, tc := range []struct {
		name           string
		egress         string
		ingress        string
		lower          stack.LinkEndpointCapabilities
		caps, atDeliv  stack.LinkEndpointCapabilities
		corruptIngress bool
	}{
		{"pass-through", "", "", rx | tx, rx | tx, rx | tx, false},
		{"delay keeps offload", "delay 1ms", "delay 1ms", rx | tx, rx | tx, rx | tx, false},
		{"egress corrupt computes checksums", "corrupt 1%", "delay 1ms", rx | tx, rx, rx, false},
		{"lower without offload", "", "delay 1ms", 0, 0, 0, false},
		{"corrupted packets are verified", "", "corrupt 100%", rx, rx, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.egress, tc.ingress)
			h.lower.caps = tc.lower
			if c := h.ep.Capabilities(); c != tc.caps {
				t.Errorf("Capabilities = %#x, want %#x", c, tc.caps)
			}
			receive(h.ep, h.pkts.make(1, 100))
			h.clock.Advance(time.Second)
			got := h.upper.deliveries()
			if len(got) != 1 || got[0].caps != tc.atDeliv {
				t.Errorf("deliveries %+v, want one with capabilities %#x", got, tc.atDeliv)
			}
			if c := h.ep.Capabilities(); c != tc.caps {
				t.Errorf("Capabilities after delivery = %#x, want %#x", c, tc.caps)
			}
		})
	}
}

func TestCloseFreesPackets(t *testing.T) {
	h := newHarness(t, "rate 1mbit delay 100ms", "delay 100ms")
	h.sendN(t, 0, 50, 1000)
	receive(h.ep, h.pkts.make(99, 1000), h.pkts.make(100, 1000))
	st := h.ep.Stats(Egress)
	if st.QueuePackets+st.InFlightPackets != 50 {
		t.Fatalf("holding %d+%d packets, want 50", st.QueuePackets, st.InFlightPackets)
	}
	h.ep.Close()
	h.pkts.checkReleased(t)
	if !h.lower.closed.Load() {
		t.Error("lower endpoint not closed")
	}
	h.clock.Advance(time.Hour)
	if n := h.lower.len() + h.upper.len(); n != 0 {
		t.Errorf("%d packets delivered after Close", n)
	}
	var l stack.PacketBufferList
	p := h.pkts.make(1, 100)
	l.PushBack(p)
	if _, err := h.ep.WritePackets(l); err == nil {
		t.Error("WritePackets after Close succeeded")
	}
	p.DecRef()
	h.ep.Close() // twice is fine
}

func TestLowerErrorsCounted(t *testing.T) {
	h := newHarness(t, "delay 1ms", "")
	h.lower.refuse.Store(true)
	h.sendN(t, 0, 5, 100)
	h.clock.Advance(time.Second)
	if st := h.ep.Stats(Egress); st.Errors != 5 {
		t.Errorf("%d errors counted, want 5", st.Errors)
	}
}

func TestStatsString(t *testing.T) {
	h := newHarness(t, "rate 1mbit limit 2 delay 10ms seed 7", "")
	h.sendN(t, 0, 5, 1000)
	want := "egress: rate 1mbit limit 2 delay 10ms seed 7\n" +
		" Sent 0 bytes 0 pkt (dropped 2: loss 0, queue 2, aqm 0; duplicated 0 corrupted 0 reordered 0 errors 0)\n" +
		" backlog 2000b 2p queued, 1000b 1p in flight"
	if got := h.ep.Stats(Egress).String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestConcurrent writes and receives from several goroutines on the real
// clock while specs change and stats are read; run it with -race.
func TestConcurrent(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	clock := tcpip.NewStdClock()
	lower := &fakeLower{recorder: recorder{clock: clock}}
	ep, err := New(lower, clock, mustParse(t, "rate 100mbit delay 1ms 500us loss 1% duplicate 1% corrupt 1%"), mustParse(t, "delay 1ms reorder 10%"))
	if err != nil {
		t.Fatal(err)
	}
	upper := &recorder{clock: clock, ep: ep}
	ep.Attach(upper)
	var pk packets
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				var l stack.PacketBufferList
				p := pk.make(uint64(i), 200+g)
				l.PushBack(p)
				if n, err := ep.WritePackets(l); n != 1 || err != nil {
					t.Errorf("WritePackets = %d, %v", n, err)
				}
				p.DecRef()
				receive(ep, pk.make(uint64(i), 100))
			}
		})
	}
	wg.Go(func() {
		specs := []string{"rate 50mbit delay 2ms", "", "loss 5% delay 1ms 1ms jitter-reorder", "rate 1gbit queue codel"}
		for i := range 200 {
			ep.Set(Egress, mustParse(t, specs[i%len(specs)]))
			ep.Set(Ingress, mustParse(t, specs[(i+1)%len(specs)]))
			_ = ep.Stats(Egress).String() + ep.Stats(Ingress).String()
			_ = ep.Capabilities()
			_ = ep.SupportedGSO()
			time.Sleep(100 * time.Microsecond) // paces the changes so that packets flow between them; not a wait
		}
	})
	wg.Wait()
	ep.Close()
	pk.checkReleased(t)
	// Timers are stopped; a callback that was already running ends.
	testwait.ForNil(t, "the shaper's goroutines to end after Close", func() error {
		if n := runtime.NumGoroutine(); n > goroutines {
			return fmt.Errorf("%d goroutines after Close, %d before", n, goroutines)
		}
		return nil
	})
	eg, in := ep.Stats(Egress), ep.Stats(Ingress)
	t.Logf("egress sent %d dropped %d; ingress sent %d", eg.SentPackets, eg.Dropped(), in.SentPackets)
	if eg.SentPackets == 0 || in.SentPackets == 0 {
		t.Error("nothing went through")
	}
}
