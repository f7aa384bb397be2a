package ustack_test

import (
	"io"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"ustack"
)

// BenchmarkObserveCost is BenchmarkPairTCPThroughput in three builds of
// the stacks:
//
//	none    no TCP probe and no NIC tap (as before they existed)
//	idle    probe and tap installed, nobody subscribed: the default
//	latest  as idle, with Latest asked every second, so the probe keeps
//	        each endpoint's last state (what `ss -i` uses)
//
// -count runs each sub-benchmark N times in a row; on a shared machine run
// them interleaved instead (see BENCHMARKS.md) and compare with benchstat.
func BenchmarkObserveCost(b *testing.B) {
	for _, mtu := range []int{1500, 65000} {
		for _, mode := range []string{"none", "idle", "latest"} {
			b.Run("mtu="+itoa(mtu)+"/"+mode, func(b *testing.B) { benchObserveCost(b, mtu, mode) })
		}
	}
}

func benchObserveCost(b *testing.B, mtu int, mode string) {
	{
		{
			restore := ustack.SetObservers(mode != "none")
			cfg := ustack.Config{MTU: mtu}
			sa, sb := newPair(b, cfg, cfg)
			restore()
			c, s := connect(b, sa, sb, "tcp4", addrB4)
			if mode == "latest" {
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					for {
						sa.TCPProbe().Latest(stack.TransportEndpointID{})
						sb.TCPProbe().Latest(stack.TransportEndpointID{})
						select {
						case <-stop:
							return
						case <-time.After(time.Second):
						}
					}
				}()
			}
			received := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, s)
				received <- n
			}()
			buf := make([]byte, 1<<20)
			stream(1, int64(len(buf))).Read(buf)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			var sent int64
			start := time.Now()
			for b.Loop() {
				n, err := c.Write(buf)
				if err != nil {
					b.Fatal(err)
				}
				sent += int64(n)
			}
			c.(closeWriter).CloseWrite()
			if n := <-received; n != sent {
				b.Fatalf("received %d of %d bytes", n, sent)
			}
			b.ReportMetric(float64(sent)*8/time.Since(start).Seconds()/1e9, "Gbit/s")
		}
	}
}
