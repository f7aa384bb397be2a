package dumbbell_test

import (
	"context"
	"testing"
	"time"

	"github.com/ustack/ustack/cc/dumbbell"
)

func TestJain(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{{[]float64{1, 1}, 1}, {[]float64{1, 0}, 0.5}, {[]float64{3, 1}, 0.8}, {nil, 0}, {[]float64{0, 0}, 0}} {
		if got := dumbbell.Jain(tc.xs...); got != tc.want {
			t.Errorf("Jain(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
}

// TestRun: two Reno flows through 10 Mbit/s, 20 ms and a BDP of buffer
// together fill most of the link and no more; the queue holds at most its
// limit, so no packet waits longer than the buffer takes to drain.
func TestRun(t *testing.T) {
	cfg := dumbbell.Config{
		Rate: 10e6, RTT: 20 * time.Millisecond, Buffer: 17,
		Warmup: time.Second, Duration: 3 * time.Second, Sample: 100 * time.Millisecond,
		Flows: []dumbbell.Flow{{CC: "reno"}, {CC: "reno"}},
	}
	res, err := dumbbell.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	total := res.TotalGoodput()
	max := 10e6 * dumbbell.PayloadBytes / dumbbell.FrameBytes
	t.Logf("goodput %.2f Mbit/s (%.2f + %.2f), queue p50 %v p99 %v, drops %d, retrans %d+%d, %d samples",
		total/1e6, res.Flows[0].Goodput/1e6, res.Flows[1].Goodput/1e6, res.Sojourn.Quantile(0.5), res.Sojourn.Quantile(0.99),
		res.QueueDrops, res.Flows[0].Retrans, res.Flows[1].Retrans, len(res.Queue))
	if total > max*1.02 || total < max*0.5 {
		t.Errorf("goodput %.2f Mbit/s over a 10 Mbit/s link (payload at most %.2f)", total/1e6, max/1e6)
	}
	drain := time.Duration(float64(cfg.Buffer*dumbbell.FrameBytes*8) / 10e6 * float64(time.Second))
	if p := res.Sojourn.Quantile(1); p > drain*21/20 {
		t.Errorf("a packet waited %v in a queue of %d packets (%v to drain)", p, cfg.Buffer, drain)
	}
	if res.Sojourn.Count() == 0 || len(res.Queue) < 20 || len(res.Flows[0].Cwnd) < 20 {
		t.Errorf("%d sojourns, %d queue samples, %d cwnd samples", res.Sojourn.Count(), len(res.Queue), len(res.Flows[0].Cwnd))
	}
}
