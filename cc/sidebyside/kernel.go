package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testpeer"
)

// The namespace's side of a run is this program run again inside the
// namespace (package testpeer's modes). Both modes print one line per
// sample interval on stdout, "UNIXNANO BYTES CWND", so the run can trace
// the kernel's side on the same clock as its own.
var peerModes = map[string]testpeer.Mode{
	"kernel-recv": kernelRecv,
	"kernel-send": kernelSend,
}

// noMetrics keeps the namespace's kernel from caching ssthresh or RTT of
// one connection for the next (this process runs in the namespace).
func noMetrics() error {
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_no_metrics_save", []byte("1"), 0); err != nil {
		return fmt.Errorf("tcp_no_metrics_save in the namespace: %w", err)
	}
	return nil
}

// kernelRecv (args: PORT) accepts one connection and reads it to the end,
// printing the bytes its TCP has received (TCP_INFO's bytes_received: in
// order, counted when they arrive, so a read that lags behind does not
// move them into the next interval).
func kernelRecv(args []string) error {
	if len(args) != 1 {
		return errors.New("kernel-recv: want PORT")
	}
	if err := noMetrics(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", ":"+args[0])
	if err != nil {
		return err
	}
	fmt.Println("ready")
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	ln.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	go report(rc, func(ti *unix.TCPInfo) (uint64, uint32) { return ti.Bytes_received, 0 })
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return nil
		}
	}
}

// kernelSend (args: ADDR CC) connects with congestion control CC and sends
// until the peer closes, printing the bytes acknowledged and the window
// from the socket's TCP_INFO.
func kernelSend(args []string) error {
	if len(args) != 2 {
		return errors.New("kernel-send: want ADDR CC")
	}
	if err := noMetrics(); err != nil {
		return err
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, args[1])
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp4", args[0])
	if err != nil {
		return fmt.Errorf("dial %s with %s: %w", args[0], args[1], err)
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	go report(rc, func(ti *unix.TCPInfo) (uint64, uint32) { return ti.Bytes_acked, ti.Snd_cwnd })
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return nil
		}
	}
}

// report prints a sample line every sampleEvery: what pick takes from the
// socket's TCP_INFO.
func report(rc syscall.RawConn, pick func(*unix.TCPInfo) (bytes uint64, cwnd uint32)) {
	w := bufio.NewWriter(os.Stdout)
	for t := time.Tick(sampleEvery); ; <-t {
		var ti *unix.TCPInfo
		var err error
		if cerr := rc.Control(func(fd uintptr) { ti, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); cerr != nil || err != nil {
			return
		}
		b, cwnd := pick(ti)
		fmt.Fprintf(w, "%d %d %d\n", time.Now().UnixNano(), b, cwnd)
		if w.Flush() != nil {
			return
		}
	}
}

// kernelSample is one line of a peer's report.
type kernelSample struct {
	at    time.Time
	bytes int64
	cwnd  float64
}

// readSamples parses a peer's report lines into out until r or ctx ends.
func readSamples(ctx context.Context, r io.Reader, out chan<- kernelSample) {
	defer close(out)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		ns, err1 := strconv.ParseInt(f[0], 10, 64)
		b, err2 := strconv.ParseInt(f[1], 10, 64)
		cw, err3 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		select {
		case out <- kernelSample{time.Unix(0, ns), b, cw}:
		case <-ctx.Done():
			return
		}
	}
}
