package ustack_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testpeer"
)

const tapBenchBytes = 256 << 20

func gbits(b *testing.B, seconds float64) {
	b.ReportMetric(float64(tapBenchBytes)*8/seconds/1e9, "Gbit/s")
}

// BenchmarkTap measures one TCP stream between the stack on a tap and the
// kernel's stack in a namespace, each direction, and the same transfer
// between two kernel namespaces over veth, side by side; then a 1-byte
// round trip to the kernel, with the tap's reader sleeping between frames
// (the default) and busy-polling for 200 µs after each (a second stack on
// a second tap). BenchmarkHost has the kernel's own round trip over veth.
func BenchmarkTap(b *testing.B) {
	s, _ := tapNetns(b)
	ns := tapNS("")
	testpeer.StartReady(b, testpeer.CommandIn(ns, "serve", "10.77.0.1:9000"))
	for _, dir := range []string{"r", "w"} {
		name := map[string]string{"r": "stack-to-kernel", "w": "kernel-to-stack"}[dir]
		b.Run("tap/"+name, func(b *testing.B) {
			b.SetBytes(tapBenchBytes)
			for i := 0; i < b.N; i++ {
				c, err := s.Dial("tcp", "10.77.0.1:9000")
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
	testpeer.StartReady(b, testpeer.CommandIn(ns, "echo", "10.77.0.1:9002"))
	b.Run("tap/rr-1byte", func(b *testing.B) { benchRoundTrip(b, s.Dial, "10.77.0.1:9002") })
	polling, _ := tapNetnsWith(b, "p", 200*time.Microsecond)
	testpeer.StartReady(b, testpeer.CommandIn(tapNS("p"), "echo", "10.77.0.1:9002"))
	b.Run("tap-busypoll/rr-1byte", func(b *testing.B) { benchRoundTrip(b, polling.Dial, "10.77.0.1:9002") })

	// The kernel on the same kind of path: two namespaces joined by veth.
	k1, k2 := ns+"-k1", ns+"-k2"
	for _, args := range [][]string{
		{"netns", "add", k1}, {"netns", "add", k2},
		{"link", "add", "ustkv1", "netns", k1, "type", "veth", "peer", "ustkv2", "netns", k2},
		{"-n", k1, "addr", "add", "10.78.0.1/24", "dev", "ustkv1"}, {"-n", k2, "addr", "add", "10.78.0.2/24", "dev", "ustkv2"},
		{"-n", k1, "link", "set", "ustkv1", "up"}, {"-n", k2, "link", "set", "ustkv2", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	b.Cleanup(func() { exec.Command("ip", "netns", "del", k1).Run(); exec.Command("ip", "netns", "del", k2).Run() })
	testpeer.StartReady(b, testpeer.CommandIn(k1, "serve", "10.78.0.1:9000"))
	b.Run("kernel-veth", func(b *testing.B) {
		b.SetBytes(tapBenchBytes)
		var total float64
		for i := 0; i < b.N; i++ {
			out, err := testpeer.CommandIn(k2, "client", "10.78.0.1:9000", "w", strconv.Itoa(tapBenchBytes)).Output()
			if err != nil {
				b.Fatalf("kernel client: %v", err)
			}
			sec, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
			if err != nil {
				b.Fatalf("kernel client printed %q", out)
			}
			total += sec
		}
		gbits(b, total/float64(b.N))
	})
}
