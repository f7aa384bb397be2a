package lab_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkForward is a router node's forwarding rate: one TCP stream of
// 64 MB from h2 through r1 to h1 (routing example, MTU 1500), against the
// same stream over a single link to the router itself. Packets/s count
// full-sized segments (1448 bytes of payload in 1514-byte frames).
func BenchmarkForward(b *testing.B) {
	upLab(b, examplePath("routing"), "bench")
	const size = 64 << 20
	for _, c := range []struct {
		name, server, addr string
	}{
		{"direct", "r1", "10.0.1.1"},
		{"through-router", "h2", "10.0.2.10"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var elapsed time.Duration
			for i := range b.N {
				addr := fmt.Sprintf("%s:%d", c.addr, 6000+i)
				srv := execOn(b, "bench", c.server, "serve", addr, strconv.Itoa(size))
				if l := srv.line(b); !strings.HasPrefix(l, "listening ") {
					b.Fatalf("server said %q", l)
				}
				start := time.Now()
				cl := execOn(b, "bench", "h1", "fetch", addr)
				if got := cl.line(b); got != fmt.Sprintf("bytes %d sha256 %s", size, streamSum(size)) {
					b.Fatalf("fetched %q", got)
				}
				elapsed += time.Since(start)
				cl.wait(b)
				srv.wait(b)
			}
			sec := elapsed.Seconds() / float64(b.N)
			b.ReportMetric(float64(size)*8/sec/1e9, "Gbit/s")
			b.ReportMetric(float64(size)/1448/sec, "pkt/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkHopRTT is the round-trip time a router node adds: UDP echo
// (64 bytes) from h1 to r1, one link away, and to h2, through r1.
func BenchmarkHopRTT(b *testing.B) {
	upLab(b, examplePath("routing"), "hop")
	for _, c := range []struct {
		name, node, addr string
	}{
		{"one-link", "r1", "10.0.1.1"},
		{"through-router", "h2", "10.0.2.10"},
	} {
		port := 7000
		b.Run(c.name, func(b *testing.B) {
			// The body runs more than once; each run has an echo server of
			// its own, the earlier ones ending with the benchmark.
			port++
			addr := fmt.Sprintf("%s:%d", c.addr, port)
			echo := execOn(b, "hop", c.node, "echo", addr)
			echo.line(b)
			rtt := execOn(b, "hop", "h1", "rtt", addr, strconv.Itoa(max(b.N, 200)))
			line := rtt.line(b)
			rtt.wait(b)
			// rtt min/avg/max A/B/C us
			var lo, avg, hi float64
			if _, err := fmt.Sscanf(line, "rtt min/avg/max %f/%f/%f us", &lo, &avg, &hi); err != nil {
				b.Fatalf("%q: %v", line, err)
			}
			b.ReportMetric(lo, "min-µs")
			b.ReportMetric(avg, "avg-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}
