package main

import (
	"context"
	"math"
	"os"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/realtime"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testpeer"
	"github.com/ustack/ustack/internal/testprog"
)

func TestMain(m *testing.M) {
	testpeer.Dispatch(peerModes)
	os.Exit(m.Run())
}

// TestAgreesWithKernel runs each algorithm of netstack and of the Linux
// kernel through the same emulated link (10 Mbit/s, 20 ms base RTT,
// drop-tail buffer of 5 BDP = 83 packets, which drain in 100 ms) and
// checks that the two implementations behave alike, within these
// tolerances:
//
//   - goodput: each at least 80 % of the link's 10 Mbit/s, and the two
//     within 20 % of each other (|a-b| <= 0.2 max(a, b));
//   - reno and cubic, loss-based, fill the deep buffer: each's 99th
//     percentile of queueing delay at least half the buffer's drain time
//     (50 ms);
//   - bbr keeps the queue short: each's median queueing delay below 1.5
//     BDP, i.e. 1.5 base RTTs (30 ms), at the link's rate.
//
// Skipped for an algorithm the kernel lacks, with the reason printed.
func TestAgreesWithKernel(t *testing.T) {
	testbin.EndToEnd(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace and a tap")
	}
	if raceEnabled {
		t.Skip("measures the algorithms at link rate, which the race detector's slowdown distorts; the pass without -race runs it")
	}
	testprog.Need(t, "ip")
	realtime.Raise(t)
	for _, cc := range []string{"reno", "cubic", "bbr"} {
		t.Run(cc, func(t *testing.T) {
			if !kernelHas(cc) {
				t.Skipf("the kernel lacks %s (not in /proc/sys/net/ipv4/tcp_available_congestion_control)", cc)
			}
			var rs [2]*Result
			for i, impl := range []Impl{Netstack, Kernel} {
				r, err := Run(context.Background(), cc, impl, 2*time.Second, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Log(r)
				rs[i] = r
			}
			for _, r := range rs {
				if r.Goodput < 0.8*rate {
					t.Errorf("%s %s: goodput %.2f Mbit/s, want at least 80%% of %.0f Mbit/s", r.Impl, cc, r.Goodput/1e6, rate/1e6)
				}
				switch cc {
				case "reno", "cubic":
					if r.P99 < drainTime/2 {
						t.Errorf("%s %s: p99 queueing delay %v, want at least half the buffer's drain time %v (a loss-based sender fills the buffer)", r.Impl, cc, r.P99, drainTime)
					}
				case "bbr":
					if limit := baseRTT * 3 / 2; r.P50 >= limit {
						t.Errorf("%s bbr: median queueing delay %v, want below 1.5 BDP (%v)", r.Impl, r.P50, limit)
					}
				}
			}
			a, b := rs[0].Goodput, rs[1].Goodput
			if math.Abs(a-b) > 0.2*max(a, b) {
				t.Errorf("%s: goodput netstack %.2f, linux %.2f Mbit/s: more than 20%% apart", cc, a/1e6, b/1e6)
			}
		})
	}
}
