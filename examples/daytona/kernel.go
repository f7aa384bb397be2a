package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack"
)

// Kernel is a network namespace whose Linux kernel serves the object on
// 10.77.0.1, one port per congestion control, to stacks attached to it by
// a tap (runKernel).
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
	// No ssthresh or RTT cached from one fetch for the next: each starts
	// from the route's initial window. The namespace's own sysctl, as this
	// process runs in it.
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_no_metrics_save", []byte("1"), 0); err != nil {
		return fmt.Errorf("tcp_no_metrics_save in the namespace: %w", err)
	}
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
