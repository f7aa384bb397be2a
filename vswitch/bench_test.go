package vswitch_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ustack/ustack/vswitch"
)

// BenchmarkSwitch measures the switch's throughput with 2 and 8 ports:
// half the ports' stacks each send one TCP stream (1 MiB per op) to a
// stack on the other half, all at once, through one switch at the default
// MTU (1500). It reports the streams' total goodput and the frames the
// switch forwarded per second. Stacks and switch share this process, so
// the figure is the switch's forwarding with the stacks' own work beside
// it on the same CPUs, as on a machine running both:
//
//	go test -run '^$' -bench BenchmarkSwitch -benchtime 2s ./vswitch
func BenchmarkSwitch(b *testing.B) {
	for _, ports := range []int{2, 8} {
		b.Run(fmt.Sprintf("ports=%d", ports), func(b *testing.B) { benchSwitch(b, ports) })
	}
}

func benchSwitch(b *testing.B, ports int) {
	const chunk = 1 << 20
	sw := startSwitch(b, "bench", vswitch.Config{})
	pairs := ports / 2
	senders := make([]net.Conn, pairs)
	for i := range pairs {
		from := newStack(b, "bench", fmt.Sprintf("s%d", i), fmt.Sprintf("10.9.0.%d/24", 1+i))
		to := newStack(b, "bench", fmt.Sprintf("r%d", i), fmt.Sprintf("10.9.0.%d/24", 101+i))
		ln, err := to.Listen("tcp4", ":5001")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		go discardAll(ln)
		c, err := from.Dial("tcp4", fmt.Sprintf("10.9.0.%d:5001", 101+i))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		senders[i] = c
	}
	buf := make([]byte, chunk)
	frames := func() (n uint64) {
		for _, p := range sw.Status().Ports {
			n += p.InFrames
		}
		return n
	}
	b.SetBytes(int64(pairs * chunk))
	b.ResetTimer()
	start, before := time.Now(), frames()
	var wg sync.WaitGroup
	errs := make(chan error, pairs)
	for _, c := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(pairs*chunk*b.N)*8/elapsed.Seconds()/1e9, "Gbit/s")
	b.ReportMetric(float64(frames()-before)/elapsed.Seconds(), "frames/s")
}

func discardAll(ln net.Listener) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	io.Copy(io.Discard, c)
}
