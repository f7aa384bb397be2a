package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ports of the servers. Guest servers (nginx, PostgreSQL) listen on their
// port inside the guest; each forwarding variant publishes it on the host at
// port+offset, so that pasta's and slirp4netns's forwarders, which hold their
// host ports for as long as they run, never collide with the others.
const (
	portIperf    = 15201
	portRR       = 15202
	portUDP      = 15203
	portCC       = 15204
	portNginxG   = 15280 // nginx in the guest
	portNginxH   = 15281 // nginx on the host
	portPostgres = 15432
)

var guestPorts = []int{portNginxG, portPostgres}

// A variant is one way of putting the guest program on a network, with a peer
// (the "host" side: servers the guest reaches and clients that reach the guest).
type variant struct {
	name string
	// ns is the network namespace the guest command enters, if any.
	ns string
	// peerNS is the namespace the peer's programs run in ("" for the host's own).
	peerNS string
	// hostAddr is the peer's address as the guest dials it.
	hostAddr string
	// guestAddr is the guest's address as the peer dials it; portOffset is
	// added to a guest server's port there.
	guestAddr  string
	portOffset int
	// wrap returns the command line that runs argv as the guest.
	wrap func(e *env, argv []string) []string
}

func variantNames() []string {
	return []string{"kernel", "ustack", "slirp4netns", "pasta", "tap", "host"}
}

const (
	nsSlirp = "ubench-slirp"
	nsPasta = "ubench-pasta"
	nsTap   = "ubench-tap"
	nsHostP = "ubench-hostp"
)

func newVariant(name, gateway string) *variant {
	switch name {
	case "kernel":
		return &variant{name: name, hostAddr: "127.0.0.1", guestAddr: "127.0.0.1",
			wrap: func(_ *env, argv []string) []string { return argv }}
	case "ustack":
		return &variant{name: name, hostAddr: "10.0.2.2", guestAddr: "127.0.0.1", portOffset: 100,
			wrap: func(e *env, argv []string) []string {
				cmd := []string{e.ustack, "run"}
				for _, p := range guestPorts {
					cmd = append(cmd, "-p", fmt.Sprintf("127.0.0.1:%d:%d", p+100, p))
				}
				return append(append(cmd, "--"), argv...)
			}}
	case "slirp4netns":
		return &variant{name: name, ns: nsSlirp, hostAddr: "10.0.2.2", guestAddr: "127.0.0.1", portOffset: 300,
			wrap: func(_ *env, argv []string) []string { return inNS(nsSlirp, argv) }}
	case "pasta":
		// pasta maps the guest's default gateway to the host's loopback.
		return &variant{name: name, ns: nsPasta, hostAddr: gateway, guestAddr: "127.0.0.1", portOffset: 200,
			wrap: func(_ *env, argv []string) []string { return inNS(nsPasta, argv) }}
	case "tap":
		return &variant{name: name, peerNS: nsTap, hostAddr: "10.91.0.1", guestAddr: "10.91.0.2",
			wrap: func(e *env, argv []string) []string {
				return inNS(nsTap, append([]string{e.ustack, "run", "--net", "tap:ubtap", "--ip", "10.91.0.2/24", "--mtu", "65520", "--"}, argv...))
			}}
	case "host":
		return &variant{name: name, peerNS: nsHostP, hostAddr: "10.92.0.1", guestAddr: "10.92.0.2",
			wrap: func(e *env, argv []string) []string {
				// The connect row's loop takes a new port for each
				// connection, and a TIME-WAIT port comes back only after
				// a second: the default block of 64 would cap it at 64
				// per second, the kernel's range at 28,000.
				cmd := []string{e.ustack, "run", "--net", "host:ubh0,ephemeral=4096"}
				for _, p := range guestPorts {
					cmd = append(cmd, "--host-port", strconv.Itoa(p))
				}
				return append(append(cmd, "--"), argv...)
			}}
	}
	panic("unknown variant " + name)
}

func inNS(ns string, argv []string) []string {
	if ns == "" {
		return argv
	}
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// env is what a run has set up: scratch directory, namespaces, background
// processes (forwarders and the peers' servers).
type env struct {
	o       options
	dir     string
	self    string
	ustack  string
	gateway string
	bg      []*proc
	peers   map[string]bool // peer namespaces whose servers run
	netns   []string
	links   []string
	pgReady bool
}

func (e *env) logf(format string, args ...any) {
	if e.o.verbose {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// proc is a background process in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

func (e *env) start(name string, argv []string) (*proc, error) {
	e.logf("start %s: %s", name, strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: &out, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process group to end with sig and kills it if it has not
// ended within 10 s.
func (p *proc) stop(sig syscall.Signal) {
	syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// output runs argv to its end (or the context's) and returns what it printed.
func (e *env) output(ctx context.Context, timeout time.Duration, argv []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	e.logf("run: %s", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	e.logf("%s", out)
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", filepath.Base(argv[0]), err, lastLine(string(out)))
	}
	return string(out), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func (e *env) must(argv ...string) error {
	_, err := e.output(context.Background(), 30*time.Second, argv)
	return err
}

// waitFor runs argv until it succeeds, for at most 30 s.
func (e *env) waitFor(ctx context.Context, argv []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := e.output(ctx, 10*time.Second, argv)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not ready after 30 s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) addNS(name string) error {
	exec.Command("ip", "netns", "del", name).Run() // a leftover of an interrupted run
	if err := e.must("ip", "netns", "add", name); err != nil {
		return err
	}
	e.netns = append(e.netns, name)
	return e.must("ip", "-n", name, "link", "set", "lo", "up")
}

// setup prepares what the chosen variants and rows need.
func (e *env) setup(ctx context.Context, variants []*variant) error {
	for _, v := range variants {
		var err error
		switch v.name {
		case "slirp4netns":
			err = e.setupSlirp(ctx)
		case "pasta":
			err = e.setupPasta(ctx)
		case "tap":
			err = e.setupTap()
		case "host":
			err = e.setupHost()
		}
		if err != nil {
			return fmt.Errorf("setting up %s: %w", v.name, err)
		}
		if !e.peers[v.peerNS] {
			if err := e.startPeer(ctx, v.peerNS); err != nil {
				return fmt.Errorf("peer servers for %s: %w", v.name, err)
			}
			e.peers[v.peerNS] = true
		}
	}
	return nil
}

func (e *env) teardown() {
	for i := len(e.bg) - 1; i >= 0; i-- {
		e.bg[i].stop(syscall.SIGTERM)
	}
	for _, l := range e.links {
		exec.Command("ip", "link", "del", l).Run()
	}
	for _, ns := range e.netns {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

func (e *env) setupSlirp(ctx context.Context) error {
	if err := e.addNS(nsSlirp); err != nil {
		return err
	}
	api := filepath.Join(e.dir, "slirp.sock")
	p, err := e.start("slirp4netns", []string{"slirp4netns", "--configure", "--mtu=65520", "--netns-type=path",
		"--api-socket", api, "/run/netns/" + nsSlirp, "tap0"})
	if err != nil {
		return err
	}
	e.bg = append(e.bg, p)
	if err := e.waitFor(ctx, []string{"ip", "netns", "exec", nsSlirp, "ping", "-c1", "-W1", "10.0.2.2"}); err != nil {
		return fmt.Errorf("slirp4netns: %w (%s)", err, p.out.String())
	}
	for _, port := range guestPorts {
		req := fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_port":%d}}`, port+300, port)
		if err := slirpAPI(api, req); err != nil {
			return err
		}
	}
	return nil
}

func slirpAPI(path, req string) error {
	c, err := net.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("slirp4netns API: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(req)); err != nil {
		return fmt.Errorf("slirp4netns API: %w", err)
	}
	c.(*net.UnixConn).CloseWrite()
	var reply map[string]any
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		return fmt.Errorf("slirp4netns API reply: %w", err)
	}
	if reply["error"] != nil {
		return fmt.Errorf("slirp4netns API: %v", reply["error"])
	}
	return nil
}

func (e *env) setupPasta(ctx context.Context) error {
	if err := e.addNS(nsPasta); err != nil {
		return err
	}
	argv := []string{"pasta", "-f", "--runas", "0", "--config-net", "-u", "none", "-T", "none", "-U", "none"}
	for _, port := range guestPorts {
		argv = append(argv, "-t", fmt.Sprintf("%d:%d", port+200, port))
	}
	argv = append(argv, "--netns", "/run/netns/"+nsPasta)
	p, err := e.start("pasta", argv)
	if err != nil {
		return err
	}
	e.bg = append(e.bg, p)
	if err := e.waitFor(ctx, []string{"ip", "netns", "exec", nsPasta, "sh", "-c", "ip route show default | grep -q ."}); err != nil {
		return fmt.Errorf("pasta: %w (%s)", err, p.out.String())
	}
	return nil
}

func (e *env) setupTap() error {
	if err := e.addNS(nsTap); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"tuntap", "add", "ubtap", "mode", "tap"},
		{"addr", "add", "10.91.0.1/24", "dev", "ubtap"},
		{"link", "set", "ubtap", "mtu", "65520", "up"},
	} {
		if err := e.must(append([]string{"ip", "-n", nsTap}, args...)...); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) setupHost() error {
	exec.Command("ip", "link", "del", "ubh0").Run()
	if err := e.addNS(nsHostP); err != nil {
		return err
	}
	if err := e.must("ip", "link", "add", "ubh0", "mtu", "65520", "type", "veth", "peer", "name", "ubh1", "mtu", "65520", "netns", nsHostP); err != nil {
		return err
	}
	e.links = append(e.links, "ubh0")
	for _, argv := range [][]string{
		{"ip", "addr", "add", "10.92.0.2/24", "dev", "ubh0"},
		{"ip", "link", "set", "ubh0", "up"},
		{"ip", "-n", nsHostP, "addr", "add", "10.92.0.1/24", "dev", "ubh1"},
		{"ip", "-n", nsHostP, "link", "set", "ubh1", "up"},
	} {
		if err := e.must(argv...); err != nil {
			return err
		}
	}
	return nil
}

// startPeer starts the peer's servers in namespace ns ("" for the host's own).
func (e *env) startPeer(ctx context.Context, ns string) error {
	tag := ns
	if tag == "" {
		tag = "root"
	}
	servers := map[string][]string{}
	if e.wants("iperf-send", "iperf-recv") {
		servers["iperf3"] = []string{"iperf3", "-s", "-p", strconv.Itoa(portIperf)}
	}
	if e.wants("rr-tcp") {
		servers["rr-server"] = []string{e.self, "rr-server", fmt.Sprintf(":%d", portRR)}
	}
	if e.wants("rr-udp") {
		servers["sockperf"] = []string{"sockperf", "sr", "-i", "0.0.0.0", "-p", strconv.Itoa(portUDP)}
	}
	if e.wants("connect") {
		servers["cc-server"] = []string{e.self, "cc-server", fmt.Sprintf(":%d", portCC)}
	}
	if e.wants("wrk-guest") {
		conf, err := e.nginxConf("host-"+tag, portNginxH)
		if err != nil {
			return err
		}
		servers["nginx"] = []string{"nginx", "-e", filepath.Join(e.dir, "nginx-host-"+tag+".err"), "-c", conf}
	}
	for _, name := range sortedKeys(servers) {
		p, err := e.start(name+"@"+tag, inNS(ns, servers[name]))
		if err != nil {
			return err
		}
		e.bg = append(e.bg, p)
	}
	// Wait until the TCP servers answer.
	var ports []int
	for name, port := range map[string]int{"iperf3": portIperf, "rr-server": portRR, "cc-server": portCC, "nginx": portNginxH} {
		if servers[name] != nil {
			ports = append(ports, port)
		}
	}
	for _, port := range ports {
		if err := e.waitFor(ctx, inNS(ns, []string{e.self, "wait-tcp", fmt.Sprintf("127.0.0.1:%d", port)})); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) wants(rows ...string) bool {
	for _, r := range e.o.rows {
		for _, w := range rows {
			if r == w {
				return true
			}
		}
	}
	return false
}

// nginxConf writes a one-worker nginx configuration serving www/1k on port.
func (e *env) nginxConf(tag string, port int) (string, error) {
	conf := fmt.Sprintf(`worker_processes 1;
master_process off;
daemon off;
user root;
pid %[1]s/nginx-%[2]s.pid;
error_log %[1]s/nginx-%[2]s.err;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/nginx-%[2]s-body;
	proxy_temp_path %[1]s/nginx-%[2]s-proxy;
	server {
		listen %[3]d;
		root %[1]s/www;
	}
}
`, e.dir, tag, port)
	path := filepath.Join(e.dir, "nginx-"+tag+".conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

func (e *env) prepareFiles() error {
	if err := os.MkdirAll(filepath.Join(e.dir, "www"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.dir, "www", "1k"), bytes.Repeat([]byte("x"), 1024), 0o644)
}
