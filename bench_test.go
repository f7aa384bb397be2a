package ustack_test

import (
	"io"
	"slices"
	"testing"
	"time"

	"github.com/ustack/ustack"
)

// BenchmarkPairTCPThroughput measures one TCP stream from one stack to the
// other over a pair. Each op writes 1 MiB; the clock stops when the
// receiver has read everything.
func BenchmarkPairTCPThroughput(b *testing.B) {
	for _, mtu := range []int{1500, 65000} {
		b.Run("mtu="+itoa(mtu), func(b *testing.B) {
			cfg := ustack.Config{MTU: mtu}
			sa, sb := newPair(b, cfg, cfg)
			c, s := connect(b, sa, sb, "tcp4", addrB4)
			sent, d := bulkSend(b, c, s)
			b.ReportMetric(float64(sent)*8/d.Seconds()/1e9, "Gbit/s")
			if n := sa.Dropped() + sb.Dropped(); n != 0 {
				b.Errorf("pair dropped %d frames", n)
			}
		})
	}
}

// BenchmarkPairTCPRoundTrip measures a 1-byte request and 1-byte reply on
// one TCP connection over a pair (Nagle is off by default), and reports the
// median and 99th percentile alongside the mean (ns/op).
func BenchmarkPairTCPRoundTrip(b *testing.B) {
	sa, sb := newPair(b, ustack.Config{}, ustack.Config{})
	c, s := connect(b, sa, sb, "tcp4", addrB4)
	go io.Copy(s, s) // echo
	one := []byte{'x'}
	in := make([]byte, 1)
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
