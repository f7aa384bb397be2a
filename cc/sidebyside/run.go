package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/inspect"
	"github.com/ustack/ustack/internal/testpeer"
	"github.com/ustack/ustack/shape"
)

// The emulated link: 10 Mbit/s, 20 ms base RTT, a drop-tail buffer of five
// bandwidth-delay products (16.5 full-sized frames each).
const (
	rate        = 10e6
	baseRTT     = 20 * time.Millisecond
	bufferPkts  = 83
	frameBytes  = 1514
	sampleEvery = 50 * time.Millisecond
	kernelAddr  = "10.78.0.1"
	stackAddr   = "10.78.0.2"
	port        = 5001
)

// bdpPkts is the bandwidth-delay product in full-sized frames.
const bdpPkts = rate * 0.020 / 8 / frameBytes

// drainTime is how long the full buffer takes to drain at the link's rate.
var drainTime = time.Duration(float64(bufferPkts*frameBytes*8) / rate * float64(time.Second))

// Impl says whose TCP sends: netstack's (on the ustack stack, to the
// kernel) or the Linux kernel's (in the namespace, to the ustack stack).
type Impl string

const (
	Netstack Impl = "netstack"
	Kernel   Impl = "linux"
)

// Result is one run's figures over its measured window and its traces.
type Result struct {
	CC       string
	Impl     Impl
	Goodput  float64 // bit/s
	P50, P99 time.Duration
	// Traces from the run's start, a point per sample interval.
	Throughput, Delay, Cwnd []point // Mbit/s, ms, packets
}

type point struct{ t, v float64 } // seconds since the start

// Run sends with algorithm cc of impl through the emulated link for warmup
// plus window and measures it.
func Run(ctx context.Context, cc string, impl Impl, warmup, window time.Duration) (*Result, error) {
	ns := fmt.Sprintf("ccside-%d", os.Getpid())
	dev := fmt.Sprintf("ccs%d", os.Getpid()%1000000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add: %w: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()

	// One direction carries the bottleneck (rate, queue, half the delay),
	// the other half the delay: the data direction of whichever sends.
	bottleneck := fmt.Sprintf("rate %dbit delay %v limit %d", int64(rate), baseRTT/2, bufferPkts)
	other := fmt.Sprintf("delay %v", baseRTT/2)
	dir := shape.Egress
	eg, in := bottleneck, other
	if impl == Kernel {
		dir, eg, in = shape.Ingress, other, bottleneck
	}
	egSpec, err := shape.Parse(eg)
	if err != nil {
		return nil, err
	}
	inSpec, err := shape.Parse(in)
	if err != nil {
		return nil, err
	}
	bufs := ustack.TCPOptions{SendBuffer: ustack.BufferRange{Min: 4096, Default: 8 << 20, Max: 8 << 20},
		ReceiveBuffer: ustack.BufferRange{Min: 4096, Default: 8 << 20, Max: 8 << 20}}
	st, err := ustack.New(ustack.Config{Net: ustack.Tap{Name: dev, Create: true}, MTU: 1500,
		Addrs: []netip.Prefix{netip.MustParsePrefix(stackAddr + "/24")}, TCP: bufs,
		Link: ustack.Link{Egress: egSpec, Ingress: inSpec}})
	if err != nil {
		return nil, fmt.Errorf("stack on a tap: %w", err)
	}
	defer st.Close()
	// The kernel sends one segment a frame (no GSO super-frames), as on a
	// wire, so that its segments meet the queue as netstack's do.
	for _, args := range [][]string{
		{"link", "set", dev, "netns", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", dev, "gso_max_segs", "1", "mtu", "1500"},
		{"-n", ns, "addr", "add", kernelAddr + "/24", "dev", dev},
		{"-n", ns, "link", "set", dev, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var peer *exec.Cmd
	var conn net.Conn
	var wg sync.WaitGroup
	// The senders and readers end when ctx does (they close their
	// connections).
	defer func() { cancel(); wg.Wait() }()
	if impl == Kernel {
		ln, err := st.Listen("tcp4", fmt.Sprintf("%s:%d", stackAddr, port))
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		peer = testpeer.Spec{Mode: "kernel-send", Netns: ns, Args: []string{fmt.Sprintf("%s:%d", stackAddr, port), cc}}.Command(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-ctx.Done(); c.Close() }()
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	} else {
		peer = testpeer.Spec{Mode: "kernel-recv", Netns: ns, Args: []string{strconv.Itoa(port)}}.Command(ctx)
	}
	peer.Stderr = os.Stderr
	out, err := peer.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := peer.Start(); err != nil {
		return nil, err
	}
	defer peer.Wait()
	defer peer.Process.Kill()
	br := bufio.NewReader(out)
	if impl == Netstack {
		if line, err := br.ReadString('\n'); err != nil || line != "ready\n" {
			return nil, fmt.Errorf("kernel receiver in %s: %q, %v (want a ready line)", ns, line, err)
		}
		c, err := st.DialContext(ctx, "tcp4", fmt.Sprintf("%s:%d", kernelAddr, port))
		if err != nil {
			return nil, fmt.Errorf("dial the kernel: %w", err)
		}
		conn = c
		defer c.Close()
		if err := c.(*ustack.TCPConn).SetCongestionControl(cc); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() { <-ctx.Done(); c.Close() }()
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	samples := make(chan kernelSample, 1024)
	go readSamples(ctx, br, samples)

	// Sample both sides until the end of the window.
	start := time.Now()
	res := &Result{CC: cc, Impl: impl}
	// The bytes delivered over time, from the kernel's end of the
	// connection: its TCP's bytes_received as the receiver, bytes_acked as
	// the sender. Both count what TCP delivered in order when it did, so
	// neither lags behind an application's reads. A window edge inside a
	// loss recovery still shifts the data held behind the hole (up to a
	// window, ~150 kB here) across the edge: a few percent of a 5 s window,
	// which is why a goodput can read slightly above the link's payload rate.
	var bytesAt []kernelSample
	var first, prev *shape.Sojourn = nil, st.LinkSojourn(dir)
	var firstAt time.Time
	var firstBytes int64
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	end := start.Add(warmup + window)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ks, ok := <-samples:
			if !ok {
				return nil, errors.New("the namespace's peer ended early")
			}
			bytesAt = append(bytesAt, ks)
			if impl == Kernel {
				res.Cwnd = append(res.Cwnd, point{ks.at.Sub(start).Seconds(), ks.cwnd})
			}
			continue
		case now := <-tick.C:
			soj := st.LinkSojourn(dir)
			d := soj.Since(prev)
			prev = soj
			t := now.Sub(start).Seconds()
			if d.Count() > 0 {
				res.Delay = append(res.Delay, point{t, float64(d.Mean()) / 1e6})
			}
			if impl == Netstack {
				if c := netstackCwnd(st, conn); c >= 0 {
					res.Cwnd = append(res.Cwnd, point{t, c})
				}
			}
			if first == nil && len(bytesAt) > 0 && now.After(start.Add(warmup)) {
				first = soj
				firstBytes, firstAt = bytesAt[len(bytesAt)-1].bytes, bytesAt[len(bytesAt)-1].at
			}
			if now.After(end) && first != nil {
				last := bytesAt[len(bytesAt)-1]
				res.Goodput = float64(last.bytes-firstBytes) * 8 / last.at.Sub(firstAt).Seconds()
				w := soj.Since(first)
				res.P50, res.P99 = w.Quantile(0.5), w.Quantile(0.99)
				res.Throughput = rateTrace(bytesAt, start)
				return res, nil
			}
		}
	}
}

// netstackCwnd is the window of the stack's connection c in packets, or
// -1 if it has none.
func netstackCwnd(st *ustack.Stack, c net.Conn) float64 {
	lp := netip.MustParseAddrPort(c.LocalAddr().String()).Port()
	for _, s := range inspect.Sockets(&inspect.Target{Stack: st}, true) {
		if s.TCP != nil && s.Local.Port == lp {
			return float64(s.TCP.Cwnd)
		}
	}
	return -1
}

// rateTrace is the throughput in Mbit/s over the last 250 ms at each
// sample of a byte count.
func rateTrace(s []kernelSample, start time.Time) []point {
	const span = 5
	var out []point
	for i := span; i < len(s); i++ {
		dt := s[i].at.Sub(s[i-span].at).Seconds()
		if dt <= 0 {
			continue
		}
		out = append(out, point{s[i].at.Sub(start).Seconds(), float64(s[i].bytes-s[i-span].bytes) * 8 / dt / 1e6})
	}
	return out
}
