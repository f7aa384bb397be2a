package ustack_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/observe"
)

// BenchmarkObserveCost is BenchmarkPairTCPThroughput in three builds of
// the stacks:
//
//	none     no TCP probe and no frame mirror (tcp.probe=0)
//	idle     probe and mirror installed, nobody tracing: the default, in
//	         which the hub keeps each connection's latest state (ss -i)
//	tracing  as idle, with a trace subscribed to both stacks' probes and
//	         mirrors and drained
//
// Besides throughput it reports the process's CPU time per MiB sent
// (user+system, both stacks), which varies less than throughput on a
// shared machine. -count runs each sub-benchmark N times in a row; on a
// shared machine run them interleaved instead (see BENCHMARKS.md).
func BenchmarkObserveCost(b *testing.B) {
	for _, mtu := range []int{1500, 65000} {
		for _, mode := range []string{"none", "idle", "tracing"} {
			b.Run("mtu="+itoa(mtu)+"/"+mode, func(b *testing.B) { benchObserveCost(b, mtu, mode) })
		}
	}
}

func benchObserveCost(b *testing.B, mtu int, mode string) {
	restore := ustack.SetObservers(mode != "none")
	cfg := ustack.Config{MTU: mtu}
	sa, sb := newPair(b, cfg, cfg)
	restore()
	c, s := connect(b, sa, sb, "tcp4", addrB4)
	if mode == "tracing" {
		for _, st := range []*ustack.Stack{sa, sb} {
			samples := st.TCPProbe().Subscribe(observe.Filter{}, 4096)
			drain(b, samples.C(), samples.Close)
			frames := st.FrameMirror().Subscribe(128, 4096) // headers, as trace takes them
			drain(b, frames.C(), frames.Close)
		}
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	sent, d := bulkSend(b, c, s)
	b.ReportMetric(float64(sent)*8/d.Seconds()/1e9, "Gbit/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/(float64(sent)/(1<<20)), "cpu-ms/MiB")
}

// drain reads a subscription until the benchmark ends, as a trace would.
func drain[T any](b *testing.B, c <-chan T, stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
			case <-done:
				return
			}
		}
	}()
	b.Cleanup(func() { stop(); close(done) })
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
