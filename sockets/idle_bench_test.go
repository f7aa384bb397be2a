package sockets_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/vswitch"
)

// BenchmarkIdleConnections measures what idle TCP connections cost a
// daemon: a program attached to it ('ustack run --stack') opens
// USTACK_IDLE_CONNS connections (default 2000) and holds them. On nat (the
// default) they go through the gateway to a listener of the benchmark's on
// the host's loopback; with USTACK_IDLE_NET=switch the daemon is on a port
// of a user-space switch and the listener is on a stack of the
// benchmark's own on another port (its connections hold no descriptors),
// so that the daemon holds only the program's sockets. It reports the
// daemon's resident memory, Go heap in use, goroutines and descriptors per
// connection while they are open, and how much resident memory and heap
// are left once they are closed. It measures once, whatever b.N:
//
//	go test -run '^$' -bench IdleConnections -benchtime 1x ./sockets
func BenchmarkIdleConnections(b *testing.B) {
	n := 2000
	if v := os.Getenv("USTACK_IDLE_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("USTACK_IDLE_CONNS=%q: want a positive number of connections", v)
		}
	}
	var ln net.Listener
	var addr string
	var d *daemon
	switch attachment := os.Getenv("USTACK_IDLE_NET"); attachment {
	case "", "nat":
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			b.Fatal(err)
		}
		addr = fmt.Sprintf("10.0.2.2:%d", ln.Addr().(*net.TCPAddr).Port)
		d = startDaemon(b, "idle")
	case "switch":
		ln, addr, d = idleOnSwitch(b)
	default:
		b.Fatalf("USTACK_IDLE_NET=%q: want nat or switch", attachment)
	}
	defer ln.Close()
	var mu sync.Mutex
	var open []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		}
	}()
	accepted := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(open)
	}
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
		open = nil
	}
	defer closeAll()

	// The first program starts the daemon's warden, which stays: the
	// baseline is taken after one.
	holdConns(b, d, addr, 1, closeAll)
	base := d.settle(b, d.counts(b))
	baseRSS := rssOf(b, d.pid)

	var held counts
	var heldRSS uint64
	start := time.Now()
	holdConns(b, d, addr, n, func() {
		testwait.ForNil(b, "the host to accept every connection", func() error {
			if got := accepted(); got < n {
				return fmt.Errorf("%d of %d accepted", got, n)
			}
			return nil
		})
		b.Logf("%d connections open after %v", n, time.Since(start).Round(time.Millisecond))
		held = d.counts(b)
		heldRSS = rssOf(b, d.pid)
		// The host closes first, so that no connection of the stack's
		// waits out TIME-WAIT (60 s) before it is gone.
		closeAll()
	})
	// Connections the program closed before the host's FIN came wait out
	// TIME-WAIT in the stack, as on Linux: endpoints are not waited for.
	testwait.ForNil(b, "the daemon to release the sockets", func() error {
		c := d.counts(b)
		if c.Goroutines <= base.Goroutines && c.FDs <= base.FDs && c.Sockets <= base.Sockets && c.Attached <= base.Attached {
			return nil
		}
		return fmt.Errorf("now %+v, before %+v", c, base)
	})
	// The daemon returns the memory of the sockets gone within its next
	// sweeps; how much it keeps is what this waits for and reports.
	ctx, cancel := context.WithTimeout(b.Context(), 20*time.Second)
	defer cancel()
	if err := testwait.Until(ctx, "the daemon to return memory", func() error {
		if rss := rssOf(b, d.pid); rss > baseRSS+64<<20 {
			return fmt.Errorf("resident %d KiB, %d KiB before", rss>>10, baseRSS>>10)
		}
		return nil
	}); err != nil {
		b.Log(err)
	}
	d.counts(b) // a first collection only ages what pools hold
	after := d.counts(b)
	afterRSS := rssOf(b, d.pid)
	// What stays is to be gone once the stack's endpoints are: those in
	// TIME-WAIT end 60 s after their close.
	testwait.ForNil(b, "the stack's endpoints to end", func() error {
		if c := d.counts(b); c.Endpoints > base.Endpoints {
			return fmt.Errorf("%d endpoints, %d before", c.Endpoints, base.Endpoints)
		}
		return nil
	})
	d.counts(b)
	gone := d.counts(b)
	goneRSS := rssOf(b, d.pid)

	per := func(now, before uint64) float64 { return (float64(now) - float64(before)) / float64(n) }
	b.ReportMetric(per(heldRSS, baseRSS), "rss-B/conn")
	b.ReportMetric(per(held.HeapBytes, base.HeapBytes), "heap-B/conn")
	b.ReportMetric(per(uint64(held.Goroutines), uint64(base.Goroutines)), "goroutines/conn")
	b.ReportMetric(per(uint64(held.FDs), uint64(base.FDs)), "fds/conn")
	b.ReportMetric(float64(afterRSS)-float64(baseRSS), "rss-B-kept")
	b.ReportMetric(float64(after.HeapBytes)-float64(base.HeapBytes), "heap-B-kept")
	b.ReportMetric(float64(goneRSS)-float64(baseRSS), "rss-B-kept-no-endpoints")
	b.ReportMetric(float64(gone.HeapBytes)-float64(base.HeapBytes), "heap-B-kept-no-endpoints")
	b.Logf("%d idle connections: before %+v rss %d KiB; held %+v rss %d KiB; closed %+v rss %d KiB; no endpoints left %+v rss %d KiB",
		n, base, baseRSS>>10, held, heldRSS>>10, after, afterRSS>>10, gone, goneRSS>>10)
}

// idleOnSwitch starts a switch and a stack of the benchmark's on it,
// listening on 10.96.0.1:9000, and a daemon on another port of the switch
// (10.96.0.2); it returns the listener, its address and the daemon.
func idleOnSwitch(b *testing.B) (net.Listener, string, *daemon) {
	dir := b.TempDir()
	b.Setenv("XDG_RUNTIME_DIR", dir)
	sw, err := vswitch.Listen("idle", vswitch.Config{})
	if err != nil {
		b.Fatal(err)
	}
	go sw.Serve()
	b.Cleanup(func() { sw.Close() })
	st, err := ustack.New(ustack.Config{Net: ustack.Switch{Name: "idle"}, Addrs: []netip.Prefix{netip.MustParsePrefix("10.96.0.1/24")}})
	if err != nil {
		b.Fatal(err)
	}
	// Closed after the daemon (cleanups run last first): the daemon's
	// connections end with FINs the stack still answers.
	b.Cleanup(func() { st.Close() })
	const addr = "10.96.0.1:9000"
	ln, err := st.Listen("tcp4", addr)
	if err != nil {
		b.Fatal(err)
	}
	d, _ := startDaemonIn(b, dir, "idle", "--net", "switch:idle", "--ip", "10.96.0.2/24")
	return ln, addr, d
}

// holdConns runs netprog hold under 'ustack run --stack' on d: n
// connections to addr, during which measure runs (and ends them from the
// host's side); then the program closes them and exits.
func holdConns(b *testing.B, d *daemon, addr string, n int, measure func()) {
	b.Helper()
	cmd := exec.Command(ustackBin, "run", "--stack", d.name, "--", netprogBin, "hold", addr, strconv.Itoa(n))
	cmd.Env = append(cleanEnv(), d.env)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	if line, _ := out.ReadString('\n'); line != fmt.Sprintf("held %d\n", n) {
		b.Fatalf("netprog hold said %q; stderr: %s", line, stderr.String())
	}
	measure()
	fmt.Fprintln(stdin, "close")
	if line, _ := out.ReadString('\n'); line != "closed\n" {
		b.Fatalf("netprog hold said %q; stderr: %s", line, stderr.String())
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("netprog hold: %v; stderr: %s", err, stderr.String())
	}
}

// rssOf is the resident memory of process pid, in bytes.
func rssOf(b *testing.B, pid int) uint64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kib, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kib << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
