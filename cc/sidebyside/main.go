// Command sidebyside runs Reno, CUBIC and BBR of netstack (package cc)
// and of the Linux kernel through the same emulated link — a ustack stack
// on a tap into a network namespace, its shaper the bottleneck of 10
// Mbit/s, 20 ms base RTT and a drop-tail buffer of five BDPs — and draws
// each algorithm's throughput, queueing delay and window of the two
// implementations on the same axes. Needs root.
//
//	go run ./cc/sidebyside -o docs/cc-sidebyside/
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ustack/ustack/internal/testpeer"
)

func main() {
	testpeer.Dispatch(peerModes)
	out := flag.String("o", "docs/cc-sidebyside", "directory for the SVG plots; the Markdown table goes beside it as DIR.md")
	warmup := flag.Duration("warmup", 3*time.Second, "time before the measured window")
	window := flag.Duration("window", 12*time.Second, "measured window")
	ccs := flag.String("cc", "reno,cubic,bbr", "comma-separated algorithms")
	flag.Parse()
	if *window <= 0 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "sidebyside: -window must be positive and -warmup not negative")
		os.Exit(2)
	}
	dir := strings.TrimSuffix(*out, "/")
	var rows []pair
	for _, cc := range strings.Split(*ccs, ",") {
		if !kernelHas(cc) {
			fmt.Fprintf(os.Stderr, "sidebyside: skipping %s: not in this kernel's tcp_available_congestion_control\n", cc)
			continue
		}
		var p pair
		for _, impl := range []Impl{Netstack, Kernel} {
			r, err := Run(context.Background(), cc, impl, *warmup, *window)
			if err != nil {
				fmt.Fprintf(os.Stderr, "sidebyside: %s %s: %v\n", impl, cc, err)
				os.Exit(1)
			}
			fmt.Println(r)
			p = append(p, r)
		}
		rows = append(rows, p)
	}
	files, err := plotAll(rows, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1)
	}
	md := markdown(rows, files, *warmup, *window)
	if err := os.WriteFile(dir+".md", []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", dir+".md", "and", len(files), "plots in", filepath.Clean(dir))
}

// pair is one algorithm's runs: netstack's, then the kernel's.
type pair []*Result

// kernelHas says whether the kernel offers algorithm cc.
func kernelHas(cc string) bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if f == cc {
			return true
		}
	}
	return false
}

func (r *Result) String() string {
	return fmt.Sprintf("%-6s %-8s goodput %5.2f Mbit/s, queueing delay p50 %5.1f ms p99 %5.1f ms",
		r.CC, r.Impl, r.Goodput/1e6, ms(r.P50), ms(r.P99))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func markdown(rows []pair, files []string, warmup, window time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Congestion control: netstack beside the Linux kernel\n\n")
	fmt.Fprintf(&b, "Each algorithm sends one bulk flow through the same emulated link: a ustack stack on a tap into a network namespace, "+
		"its shaper the bottleneck (%.0f Mbit/s, %v base RTT, drop-tail buffer of %d packets = 5 BDP, drained in %.0f ms). "+
		"netstack sends from the ustack stack to the kernel (shaper on the stack's egress); the kernel sends from the namespace to the ustack stack "+
		"(shaper on its ingress). Queueing delay is the shaper's own schedule; goodput is the in-order bytes the kernel's end counted (TCP_INFO bytes_received or bytes_acked) over %v after %v of warm-up; a window edge inside a loss recovery moves the data held behind the hole across it, so a figure may read a little above the payload rate of %.2f Mbit/s.\n\n",
		rate/1e6, baseRTT, bufferPkts, ms(drainTime), window, warmup, rate*1448/frameBytes/1e6)
	fmt.Fprintf(&b, "Made with `go run ./cc/sidebyside -o docs/cc-sidebyside/` (root).\n\n")
	fmt.Fprintf(&b, "| algorithm | sender | goodput Mbit/s | queueing delay p50 ms | p99 ms |\n|---|---|---:|---:|---:|\n")
	for _, p := range rows {
		for _, r := range p {
			fmt.Fprintf(&b, "| %s | %s | %.2f | %.1f | %.1f |\n", r.CC, r.Impl, r.Goodput/1e6, ms(r.P50), ms(r.P99))
		}
	}
	b.WriteString("\n")
	for _, f := range files {
		fmt.Fprintf(&b, "![%s](%s)\n", f, f)
	}
	return b.String()
}
