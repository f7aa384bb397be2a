package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/mutate"
	"github.com/ustack/ustack/shape"
	"github.com/ustack/ustack/tcpplot"
)

// The paper's setting: a 60 KB object over a 10 Mbit/s link with a 100 ms
// round trip. The whole link is emulated on the receiver's (attacker's)
// NIC, 50 ms each way, so it applies alike to a sender on a paired
// user-level stack and to the Linux kernel behind a tap.
const (
	objectSize = 60 << 10
	rtt        = 100 * time.Millisecond
	linkSpec   = "rate 10mbit delay 50ms"
	serverPort = 80
)

// object is the 60 KB the servers send: not all zeros, so that a byte
// acknowledged but never delivered (optimistic ACKs) shows in the digest.
var object = func() []byte {
	b := make([]byte, objectSize)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}()

// A Sender is one server TCP: netstack with a congestion control, or the
// Linux kernel in a network namespace, with an initial window.
type Sender struct {
	Name   string
	Kernel bool   // the Linux kernel, reached through a tap
	CC     string // congestion control name
	IW     int    // initial window, segments
}

// An Attack is what the receiver does: a mutate rule on its own ACKs (none
// for the normal transfer) and whether it offers SACK.
type Attack struct {
	Name   string
	Rule   string
	NoSACK bool
}

// Result is one fetch.
type Result struct {
	Sender, Attack string
	// Completion is from the client's connect to its read of the last
	// byte, in RTTs.
	Completion float64
	// Rounds are the round trips the sender took to send the object
	// (Rounds).
	Rounds int
	// Injected counts the ACKs the mutator added.
	Injected uint64
	// Pcap is the client's capture of the transfer.
	Pcap string
	// Trace is the transfer in the client's capture.
	Trace Trace
}

// fetch connects to the server, sends a request line and reads the object,
// checking its digest. It returns the time from connect to last byte.
// A connection opened and closed first resolves the link-layer addresses,
// so that the timed one starts with its SYN, not with an ARP exchange
// across the emulated link (one more RTT).
func fetch(dial func() (net.Conn, error)) (time.Duration, error) {
	warm, err := dial()
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	warm.Close()
	start := time.Now()
	c, err := dial()
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /object\n"); err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	n, err := io.Copy(h, c)
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("read after %d bytes: %w", n, err)
	}
	if want := sha256.Sum256(object); n != objectSize || !bytes.Equal(h.Sum(nil), want[:]) {
		return 0, fmt.Errorf("got %d bytes with SHA-256 %x, want %d with %x", n, h.Sum(nil), objectSize, want)
	}
	return took, nil
}

// serve answers each connection on ln with the object: it reads the
// request line, writes the object and closes.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				return
			}
			c.Write(object)
		}()
	}
}

// clientConfig is the attacker's stack: the emulated link both ways, the
// attack's rule, a capture.
func clientConfig(a Attack, pcap io.Writer) (ustack.Config, error) {
	spec, err := shape.Parse(linkSpec)
	if err != nil {
		return ustack.Config{}, err
	}
	cfg := ustack.Config{Link: ustack.SymmetricLink(spec), Pcap: pcap}
	if a.Rule != "" {
		r, err := mutate.Parse(a.Rule)
		if err != nil {
			return ustack.Config{}, fmt.Errorf("attack %s: %w", a.Name, err)
		}
		cfg.Mutate = []mutate.Rule{r}
	}
	if a.NoSACK {
		if err := cfg.TCP.Set("tcp.sack", "0"); err != nil {
			return ustack.Config{}, err
		}
	}
	return cfg, nil
}

// runNetstack fetches the object from a netstack server on a paired stack.
func runNetstack(s Sender, a Attack, pcapPath string) (time.Duration, uint64, error) {
	pcap, err := os.Create(pcapPath)
	if err != nil {
		return 0, 0, err
	}
	ccfg, err := clientConfig(a, pcap)
	if err != nil {
		pcap.Close()
		return 0, 0, err
	}
	var scfg ustack.Config
	scfg.TCP.CongestionControl = s.CC
	srv, cli, err := ustack.NewPair(scfg, ccfg)
	if err != nil {
		pcap.Close()
		return 0, 0, err
	}
	defer srv.Close()
	defer cli.Close()
	ln, err := srv.Listen("tcp4", fmt.Sprintf("10.0.9.1:%d", serverPort))
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	go serve(ln)
	took, err := fetch(func() (net.Conn, error) { return cli.Dial("tcp4", ln.Addr().String()) })
	if err != nil {
		return 0, 0, err
	}
	return took, injected(cli), nil
}

func injected(s *ustack.Stack) uint64 {
	var n uint64
	for _, r := range s.MutateStats().Rules {
		n += r.Injected
	}
	return n
}

// Kernel is a network namespace whose Linux kernel serves the object on
// 10.77.0.1, one port per congestion control, to stacks attached to it by
// a tap (NewTapStack).
type Kernel struct {
	ns     string
	ip     string
	server *exec.Cmd
	Ports  map[string]int
}

const (
	kernelAddr = "10.77.0.1"
	stackAddr  = "10.77.0.2"
)

// serveEnv, set in the environment, makes this program (or the test
// binary) the kernel's server: it listens on each PORT=CC of the value's
// comma-separated list with that congestion control.
const serveEnv = "DAYTONA_SERVE"

// StartKernel makes the namespace and starts the server in it, a re-run of
// this executable. ipPath is iproute2's ip.
func StartKernel(ipPath string) (*Kernel, error) {
	k := &Kernel{ns: fmt.Sprintf("daytona-%d", os.Getpid()), ip: ipPath, Ports: map[string]int{"reno": 8001, "cubic": 8002}}
	if err := k.run("netns", "add", k.ns); err != nil {
		return nil, err
	}
	// No cached ssthresh or RTT from one run to the next: each connection
	// starts from the route's initial window.
	for _, kv := range []string{"net.ipv4.tcp_no_metrics_save=1", "net.ipv4.tcp_slow_start_after_idle=0"} {
		if err := k.inNS("sysctl", "-q", "-w", kv).Run(); err != nil {
			k.Close()
			return nil, fmt.Errorf("sysctl %s in the namespace: %w", kv, err)
		}
	}
	if err := k.run("-n", k.ns, "link", "set", "lo", "up"); err != nil {
		k.Close()
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		k.Close()
		return nil, err
	}
	var spec []string
	for cc, port := range k.Ports {
		spec = append(spec, fmt.Sprintf("%d=%s", port, cc))
	}
	k.server = k.inNS(self)
	k.server.Env = append(os.Environ(), serveEnv+"="+strings.Join(spec, ","))
	k.server.Stderr = os.Stderr
	out, err := k.server.StdoutPipe()
	if err != nil {
		k.Close()
		return nil, err
	}
	if err := k.server.Start(); err != nil {
		k.Close()
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		k.Close()
		return nil, fmt.Errorf("kernel server in %s: %q, %v (want a ready line)", k.ns, line, err)
	}
	return k, nil
}

func (k *Kernel) run(args ...string) error {
	if out, err := exec.Command(k.ip, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (k *Kernel) inNS(args ...string) *exec.Cmd {
	return exec.Command(k.ip, append([]string{"netns", "exec", k.ns}, args...)...)
}

// Close stops the server and removes the namespace.
func (k *Kernel) Close() {
	if k.server != nil && k.server.Process != nil {
		k.server.Process.Kill()
		k.server.Wait()
	}
	exec.Command(k.ip, "netns", "del", k.ns).Run()
}

// runKernel fetches the object from the kernel over a tap made for this
// run, its route carrying the sender's initial window.
func (k *Kernel) runKernel(s Sender, a Attack, pcapPath string) (time.Duration, uint64, error) {
	port, ok := k.Ports[s.CC]
	if !ok {
		return 0, 0, fmt.Errorf("sender %s: the kernel serves %v, not %q", s.Name, k.Ports, s.CC)
	}
	pcap, err := os.Create(pcapPath)
	if err != nil {
		return 0, 0, err
	}
	cfg, err := clientConfig(a, pcap)
	if err != nil {
		pcap.Close()
		return 0, 0, err
	}
	dev := fmt.Sprintf("dayt%d", os.Getpid()%100000)
	cfg.Net = ustack.Tap{Name: dev, Create: true}
	cfg.MTU = 1500
	cfg.Addrs = []netip.Prefix{netip.MustParsePrefix(stackAddr + "/24")}
	cli, err := ustack.New(cfg)
	if err != nil {
		pcap.Close()
		return 0, 0, fmt.Errorf("stack on a tap: %w", err)
	}
	defer cli.Close()
	// The kernel sends one segment a frame (no TSO/GSO super-frames), so
	// that the receiver ACKs segments as it would on a wire.
	for _, args := range [][]string{
		{"link", "set", dev, "netns", k.ns},
		{"-n", k.ns, "link", "set", dev, "gso_max_segs", "1", "mtu", "1500"},
		{"-n", k.ns, "addr", "add", kernelAddr + "/24", "dev", dev},
		{"-n", k.ns, "link", "set", dev, "up"},
		{"-n", k.ns, "route", "replace", "10.77.0.0/24", "dev", dev, "proto", "kernel", "scope", "link", "src", kernelAddr, "initcwnd", fmt.Sprint(s.IW)},
	} {
		if err := k.run(args...); err != nil {
			return 0, 0, err
		}
	}
	took, err := fetch(func() (net.Conn, error) { return cli.Dial("tcp4", fmt.Sprintf("%s:%d", kernelAddr, port)) })
	if err != nil {
		return 0, 0, err
	}
	return took, injected(cli), nil
}

// serveKernel is the server run inside the namespace: the kernel's TCP.
func serveKernel(spec string) error {
	for _, item := range strings.Split(spec, ",") {
		port, cc, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("%s: %q is not PORT=CC", serveEnv, item)
		}
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc)
			})
			return errors.Join(err, serr)
		}}
		ln, err := lc.Listen(nil, "tcp4", ":"+port)
		if err != nil {
			return fmt.Errorf("listen on %s with %s: %w", port, cc, err)
		}
		go serve(ln)
	}
	fmt.Println("ready")
	select {}
}

// Trace is a transfer as the client's capture shows it. The capture sits
// between the client's emulated link and the wire, and the sender is at
// the wire's other end with no delay of its own, so these are the times at
// which the sender sent each segment and received each ACK: the sender's
// view, as in a trace taken on the server.
type Trace struct {
	// Data are (time since the SYN in RTTs, end of the segment in KB of
	// the object) for each data segment, in order.
	Data [][2]float64
	// Acks are (time, acknowledged KB) for each ACK the client sent after
	// the handshake, the attack's included.
	Acks [][2]float64
}

// readTrace reads the client's capture of one transfer.
func readTrace(pcapPath string) (Trace, error) {
	f, err := tcpplot.Load(pcapPath)
	if err != nil {
		return Trace{}, err
	}
	c := f.Busiest()
	var t0 float64
	var isn uint32
	var haveSYN, haveISN bool
	var tr Trace
	kb := func(seq uint32) float64 { return float64(seq-isn) / 1024 }
	for _, p := range c.Pkts {
		t := (p.T - t0) / rtt.Seconds()
		switch {
		case p.FromA && strings.Contains(p.Flags, "S") && !haveSYN:
			t0, haveSYN = p.T, true
		case !p.FromA && strings.Contains(p.Flags, "S"):
			isn, haveISN = p.Seq+1, true
		case !haveISN:
		case !p.FromA && p.Len > 0:
			tr.Data = append(tr.Data, [2]float64{t, kb(p.Seq + uint32(p.Len))})
		case p.FromA && strings.Contains(p.Flags, "A") && p.Ack != isn && !strings.Contains(p.Flags, "F"):
			tr.Acks = append(tr.Acks, [2]float64{t, kb(p.Ack)})
		}
	}
	if !haveSYN || len(tr.Data) == 0 {
		return Trace{}, fmt.Errorf("%s: no handshake and data in the capture", filepath.Base(pcapPath))
	}
	return tr, nil
}
