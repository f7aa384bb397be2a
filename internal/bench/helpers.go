package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/wakeups"
)

// helpers are the small programs the benchmark runs as guest or peer, and
// two for looking closer (wakeups, which reads a trace taken of one, and
// relay-floor): the benchmark's own binary started with the helper's name
// as first argument.
var helpers = map[string]func(args []string) error{
	"rr-client":    rrClient,
	"rr-client-fd": rrClientFD,
	"relay-floor":  relayFloor,
	"rr-server":    rrServer,
	"cc-client":    ccClient,
	"cc-server":    ccServer,
	"wait-tcp":     waitTCP,
	"wait-http":    waitHTTP,
	"wakeups":      wakeupsReport,
}

// usageError is a helper's wrong arguments: exit status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

func twoArgs(args []string, usage string) (string, time.Duration, error) {
	if len(args) != 2 {
		return "", 0, usageError("usage: " + usage)
	}
	d, err := time.ParseDuration(args[1])
	if err != nil {
		return "", 0, fmt.Errorf("duration: %w", err)
	}
	return args[0], d, nil
}

const rrSize = 14

// rrClient sends 14-byte requests over one TCP connection, one at a time,
// each answered by an echo, and prints the median round trip in µs.
func rrClient(args []string) error {
	addr, d, err := twoArgs(args, "rr-client HOST:PORT DURATION")
	if err != nil {
		return err
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return rrLoop(c, d)
}

// rrLoop runs rr-client's exchanges over c for d (after 200 ms of warm-up)
// and prints the median round trip in µs.
func rrLoop(c net.Conn, d time.Duration) error {
	buf := make([]byte, rrSize)
	var rtts []time.Duration
	warm := time.Now().Add(200 * time.Millisecond)
	end := warm.Add(d)
	for {
		t := time.Now()
		if t.After(end) {
			break
		}
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if t.After(warm) {
			rtts = append(rtts, time.Since(t))
		}
	}
	if len(rtts) == 0 {
		return errors.New("no round trips")
	}
	slices.Sort(rtts)
	fmt.Printf("p50_us=%.1f n=%d\n", float64(rtts[len(rtts)/2].Nanoseconds())/1000, len(rtts))
	return nil
}

func rrServer(args []string) error {
	if len(args) != 1 {
		return usageError("usage: rr-server [HOST]:PORT")
	}
	l, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() { io.Copy(c, c); c.Close() }()
	}
}

// ccClient opens and closes TCP connections one after another with plain
// socket, connect and close calls (no other socket calls, unlike net.Dial),
// and prints how many per second.
func ccClient(args []string) error {
	addr, d, err := twoArgs(args, "cc-client IPv4:PORT DURATION")
	if err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("address %q: want IPv4:PORT", addr)
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	n, failed := 0, 0
	start := time.Now()
	for time.Since(start) < d {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		if err := unix.Connect(fd, sa); err != nil {
			failed++
			if failed > 100 {
				unix.Close(fd)
				return fmt.Errorf("connect: %w (after %d connections)", err, n)
			}
		} else {
			n++
		}
		unix.Close(fd)
	}
	fmt.Printf("per_s=%.1f n=%d failed=%d\n", float64(n)/time.Since(start).Seconds(), n, failed)
	return nil
}

func ccServer(args []string) error {
	if len(args) != 1 {
		return usageError("usage: cc-server [HOST]:PORT")
	}
	l, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}

func waitTCP(args []string) error {
	if len(args) != 1 {
		return usageError("usage: wait-tcp HOST:PORT")
	}
	c, err := net.DialTimeout("tcp", args[0], 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// waitHTTP succeeds when URL answers 200: a forwarder's accepted connection
// alone does not show that the guest's server listens.
func waitHTTP(args []string) error {
	if len(args) != 1 {
		return usageError("usage: wait-http URL")
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(args[0])
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", args[0], resp.Status)
	}
	return nil
}

// wakeupsReport prints the goroutine hand-offs of a Go execution trace of
// ustack (USTACK_GOTRACE), attributed to ustack's and netstack's functions;
// OPS, when given, is how many operations the trace covers (the exchanges
// rr-client counted), for figures per operation.
func wakeupsReport(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return usageError("usage: wakeups TRACE [OPS]")
	}
	ops := 0
	if len(args) == 2 {
		n, err := strconv.Atoi(args[1])
		if err != nil || n <= 0 {
			return usageError(fmt.Sprintf("OPS: %q is not a positive whole number", args[1]))
		}
		ops = n
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	ours := func(fn string) bool {
		return strings.HasPrefix(fn, "github.com/ustack/ustack/") || strings.HasPrefix(fn, "gvisor.dev/gvisor/pkg/tcpip/")
	}
	rep, err := wakeups.Analyze(f, ours)
	if err != nil {
		return err
	}
	rep.Write(os.Stdout, 15, ops)
	return nil
}
