package ustack_test

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testpeer"
)

// BenchmarkHost measures one TCP stream each way between a stack on --net
// host (sharing the root namespace's veth end and its address) and the
// kernel in a namespace, beside the root namespace's own kernel on the very
// same veth path with the same Go code; then a 1-byte round trip on both.
// "host-busypoll" is a second stack on the same veth whose reader polls
// for 200 µs after each frame (Config.BusyPoll).
func BenchmarkHost(b *testing.B) {
	dev, _ := hostVeth(b)
	s := newHostStack(b, dev)
	polling, err := ustack.New(ustack.Config{Net: ustack.Host{Iface: dev}, BusyPoll: 200 * time.Microsecond})
	if err != nil {
		b.Fatal(err)
	}
	defer polling.Close()
	testpeer.StartReady(b, testpeer.CommandIn(hostNS(), "serve", remoteAddr4+":9000"))
	dialers := []struct {
		name string
		dial func(network, addr string) (net.Conn, error)
	}{{"host", s.Dial}, {"host-busypoll", polling.Dial}, {"kernel", net.Dial}}
	for _, d := range dialers {
		for _, dir := range []string{"r", "w"} {
			name := map[string]string{"r": "to-namespace", "w": "from-namespace"}[dir]
			b.Run(d.name+"/"+name, func(b *testing.B) {
				b.SetBytes(tapBenchBytes)
				for i := 0; i < b.N; i++ {
					c, err := d.dial("tcp", remoteAddr4+":9000")
					if err != nil {
						b.Fatal(err)
					}
					if err := bulk(c, dir, tapBenchBytes); err != nil {
						b.Fatal(err)
					}
				}
				gbits(b, b.Elapsed().Seconds()/float64(b.N))
			})
		}
	}
	// Round trip: the namespace's kernel echoes one byte.
	testpeer.StartReady(b, testpeer.CommandIn(hostNS(), "echo", remoteAddr4+":9002"))
	for _, d := range dialers {
		b.Run(d.name+"/rr-1byte", func(b *testing.B) { benchRoundTrip(b, d.dial, remoteAddr4+":9002") })
	}
}

// benchRoundTrip sends one byte to the echo server at addr and waits for
// it to come back, b.N times, and reports the median and 99th percentile.
func benchRoundTrip(b *testing.B, dial func(network, addr string) (net.Conn, error), addr string) {
	c, err := dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := []byte{1}
	rtts := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds())/1e3, "p99-µs")
}
