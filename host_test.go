package ustack_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testpeer"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// The host attachment's tests share a veth between the root namespace's
// kernel and the stack: hostDev (10.79.0.2/24, fd79::2/64) is the "host
// interface", made by the test in the root namespace; its peer sits in a
// namespace of the test's own (10.79.0.1/24, fd79::1/64) as the remote
// machine. Nothing else of the host is touched.
const (
	hostAddr4   = "10.79.0.2"
	remoteAddr4 = "10.79.0.1"
	remoteAddr6 = "fd79::1"
)

// hostVeth creates the veth and namespace and returns the interface name
// and a command maker for the namespace. It needs root and iproute2.
func hostVeth(t testing.TB) (string, func(args ...string) *exec.Cmd) {
	t.Helper()
	testbin.EndToEnd(t)
	if os.Geteuid() != 0 {
		t.Skip("host attachment tests need root (CAP_NET_ADMIN and CAP_NET_RAW)")
	}
	ipPath := testprog.Need(t, "ip")
	if _, err := hostports.TableExists("ustack_0"); err != nil {
		t.Skip("host attachment tests need nftables in the kernel: ", err)
	}
	ns := hostNS()
	dev := fmt.Sprintf("ustkh%d", os.Getpid()%100000)
	peer := fmt.Sprintf("ustkp%d", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipPath, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command(ipPath, "netns", "del", ns).Run() })
	run("link", "add", dev, "type", "veth", "peer", "name", peer, "netns", ns)
	t.Cleanup(func() { exec.Command(ipPath, "link", "del", dev).Run() })
	run("addr", "add", hostAddr4+"/24", "dev", dev)
	run("-6", "addr", "add", "fd79::2/64", "dev", dev, "nodad")
	run("link", "set", dev, "up")
	run("-n", ns, "addr", "add", remoteAddr4+"/24", "dev", peer)
	run("-n", ns, "-6", "addr", "add", remoteAddr6+"/64", "dev", peer, "nodad")
	run("-n", ns, "link", "set", peer, "up")
	run("-n", ns, "link", "set", "lo", "up")
	inNS := func(args ...string) *exec.Cmd {
		return exec.Command(ipPath, append([]string{"netns", "exec", ns}, args...)...)
	}
	return dev, inNS
}

// hostNS is the name of the namespace hostVeth makes.
func hostNS() string { return fmt.Sprintf("ustack-host-%d", os.Getpid()) }

// newHostStack puts a stack on dev with TCP port 8080 reserved.
func newHostStack(t testing.TB, dev string) *ustack.Stack {
	return newHostStackPolling(t, dev, 0)
}

// newHostStackPolling is newHostStack with Config.BusyPoll set.
func newHostStackPolling(t testing.TB, dev string, busyPoll time.Duration) *ustack.Stack {
	t.Helper()
	s, err := ustack.New(ustack.Config{Net: ustack.Host{Iface: dev, Ports: []ustack.HostPort{{Port: 8080}}},
		Logf: t.Logf, BusyPoll: busyPoll})
	if err != nil {
		t.Fatalf("New on host:%s: %v", dev, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// nsTCPCounter reads a Tcp counter of /proc/net/snmp in the namespace.
func nsTCPCounter(t testing.TB, inNS func(...string) *exec.Cmd, name string) int64 {
	t.Helper()
	out, err := inNS("cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatalf("reading the namespace's /proc/net/snmp: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == name && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	t.Fatalf("no Tcp counter %s in the namespace", name)
	return 0
}

// TestHostInterop: a stack sharing 10.79.0.2 with the root namespace's
// kernel talks TCP both ways and pings the remote kernel, while the root
// kernel keeps serving its own port on the same address, and the root
// kernel sends no RST for the stack's connections.
//
// It runs with the packet socket's reader sleeping between frames (the
// default) and busy-polling (--busy-poll).
func TestHostInterop(t *testing.T) {
	for _, c := range []struct {
		name     string
		busyPoll time.Duration
	}{{"sleeping", 0}, {"busy-poll", 200 * time.Microsecond}} {
		t.Run(c.name, func(t *testing.T) { testHostInterop(t, c.busyPoll) })
	}
}

func testHostInterop(t *testing.T, busyPoll time.Duration) {
	dev, inNS := hostVeth(t)
	s := newHostStackPolling(t, dev, busyPoll)
	n := int64(64 << 20)
	if raceEnabled {
		n = 16 << 20
	}
	// A RST from the root kernel would end a connection of the remote
	// kernel while it is being set up or established.
	resets := func() int64 { return nsTCPCounter(t, inNS, "AttemptFails") + nsTCPCounter(t, inNS, "EstabResets") }
	resetsBefore := resets()
	rsts := captureRSTs(t, dev)
	table := fmt.Sprintf("ustack_%d", os.Getpid())

	t.Run("ping", func(t *testing.T) { testPing(t, s, "icmp", remoteAddr4) })
	t.Run("ping ipv6", func(t *testing.T) { testPing(t, s, "icmp6", remoteAddr6) })

	t.Run("stack client to kernel server", func(t *testing.T) {
		r := testpeer.StartReady(t, testpeer.CommandIn(hostNS(), "sinkhash", remoteAddr4+":9001"))
		c, err := s.Dial("tcp", remoteAddr4+":9001")
		if err != nil {
			t.Fatal(err)
		}
		local := netip.MustParseAddrPort(c.LocalAddr().String())
		if !slicesContains(s.HostPorts("tcp"), local.Port()) {
			t.Errorf("the connection's port %d is not one of the stack's reserved ports", local.Port())
		}
		want := newHashingWriter()
		if _, err := io.Copy(io.MultiWriter(c, want), stream(5, n)); err != nil {
			t.Fatalf("sending: %v", err)
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
		line, err := r.ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("sink: %v", err)
		}
		if wantLine := fmt.Sprintf("%x %d\n", want.Sum(), n); line != wantLine {
			t.Fatalf("the kernel received %q, want %q", line, wantLine)
		}
	})

	t.Run("stack client reads from kernel server", func(t *testing.T) {
		testpeer.StartReady(t, testpeer.CommandIn(hostNS(), "serve", remoteAddr4+":9000"))
		c, err := s.Dial("tcp", remoteAddr4+":9000")
		if err != nil {
			t.Fatal(err)
		}
		if err := bulk(c, "w", n); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kernel client to stack listener, kernel listener beside it", func(t *testing.T) {
		ln, err := s.Listen("tcp", ":8080")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		// The root kernel's own listener on the shared address.
		kln, err := net.Listen("tcp", hostAddr4+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer kln.Close()
		sums := make(chan [32]byte, 2)
		for _, l := range []net.Listener{ln, kln} {
			go func() {
				c, err := l.Accept()
				if err != nil {
					sums <- [32]byte{}
					return
				}
				h := newHashingWriter()
				io.Copy(h, c)
				c.Close()
				sums <- h.Sum()
			}()
		}
		var clients []*exec.Cmd
		for _, addr := range []string{hostAddr4 + ":8080", kln.Addr().String()} {
			c := testpeer.CommandIn(hostNS(), "rawsend", addr, strconv.FormatInt(n, 10))
			c.Stderr = os.Stderr
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
		}
		for i, c := range clients {
			if err := c.Wait(); err != nil {
				t.Fatalf("kernel client %d: %v", i, err)
			}
		}
		want := newHashingWriter()
		io.Copy(want, stream(3, n))
		for range 2 {
			select {
			case sum := <-sums:
				if sum != want.Sum() {
					t.Fatal("a transfer arrived damaged")
				}
			case <-time.After(30 * time.Second):
				t.Fatal("a transfer did not finish")
			}
		}
	})

	t.Run("listen on an unreserved port reserves it", func(t *testing.T) {
		ln, err := s.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		ln, err = s.Listen("tcp", ":8081")
		if err != nil {
			t.Fatalf("Listen :8081: %v", err)
		}
		defer ln.Close()
		if _, err := net.Listen("tcp", hostAddr4+":8081"); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("the host kernel could bind the stack's port 8081: %v", err)
		}
		// A port the host holds is refused to the stack.
		hl, err := net.Listen("tcp", hostAddr4+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer hl.Close()
		if _, err := s.Listen("tcp", hl.Addr().String()); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("Listen on a port the host holds: %v, want EADDRINUSE", err)
		}
	})

	// No RST reached the remote kernel: the root kernel stayed silent
	// about the stack's connections, whose packets its firewall dropped.
	if d := resets() - resetsBefore; d != 0 {
		t.Errorf("%d connections of the remote kernel were reset or failed", d)
	}
	// Control: the kernel's RST for its own closed port 1 must be seen, and
	// be the only one.
	refused := testpeer.CommandIn(hostNS(), "rawsend", hostAddr4+":1", "1")
	if err := refused.Run(); err == nil {
		t.Error("connecting to the kernel's closed port 1 succeeded")
	}
	if got := rsts(hostAddr4 + ".1 >"); got != "" {
		lines := strings.Split(got, "\n")
		for _, l := range lines {
			if !strings.Contains(l, hostAddr4+".1 >") {
				t.Errorf("RST on the wire that is not the control's: %s", l)
			}
		}
	} else if _, err := exec.LookPath("tcpdump"); err == nil {
		t.Error("tcpdump saw no RST, not even the control's: the capture does not work")
	}
	if d, err := hostports.TableDropped(table); err != nil || d == 0 {
		t.Errorf("the firewall table dropped %d packets (%v), want the stack's packets dropped", d, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ok, err := hostports.TableExists(table); err != nil || ok {
		t.Errorf("table %s after Close: exists=%v (%v)", table, ok, err)
	}
	if l, err := net.Listen("tcp", hostAddr4+":8080"); err != nil {
		t.Errorf("port 8080 after Close: %v, want it free", err)
	} else {
		l.Close()
	}
}

// TestHostConnectLoop: a loop of connects to one server, each closed by
// the stack first (so its side goes to TIME-WAIT), goes on past the
// stack's small block of ephemeral ports: host mode's tcp.tw_reuse=1 takes
// a TIME-WAIT port back once it is a second old, where Linux's default
// would fail every connect until a TIME-WAIT ends. TIME-WAIT is set to
// ten minutes so that only reuse can give a port back within the test.
func TestHostConnectLoop(t *testing.T) {
	dev, _ := hostVeth(t)
	const block = 8
	cfg := ustack.Config{Net: ustack.Host{Iface: dev, EphemeralPorts: block}, Logf: t.Logf}
	if err := cfg.TCP.Set("tcp.time_wait", "10m"); err != nil {
		t.Fatal(err)
	}
	s, err := ustack.New(cfg)
	if err != nil {
		t.Fatalf("New on host:%s: %v", dev, err)
	}
	defer s.Close()
	testpeer.StartReady(t, testpeer.CommandIn(hostNS(), "echo", remoteAddr4+":9002"))
	ports := map[string]bool{}
	for i := range 3 * block {
		var c net.Conn
		testwait.ForNil(t, fmt.Sprintf("connect %d of %d with %d ephemeral ports", i+1, 3*block, block), func() (err error) {
			c, err = s.Dial("tcp", remoteAddr4+":9002")
			return err
		})
		ports[c.LocalAddr().String()] = true
		var b [1]byte
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != byte(i) {
			t.Fatalf("echo of connection %d: %v %v", i+1, b, err)
		}
		c.Close()
	}
	if len(ports) > block {
		t.Errorf("%d local ports used, more than the block's %d", len(ports), block)
	}
}

// TestHostBadFrames: bad-checksum, truncated, overlong and garbage-fragment
// frames sent to the stack's address from the remote namespace while the
// kernel there streams 64 MiB to the stack: the transfer arrives intact and
// the bad TCP checksums are counted. Frames the packet filter turns away
// (those without a port of the stack's) never reach the stack at all.
func TestHostBadFrames(t *testing.T) {
	dev, _ := hostVeth(t)
	s := newHostStack(t, dev)
	csumErrs, malformed := badFramesDuringTransfer(t, s, hostNS(), fmt.Sprintf("ustkp%d", os.Getpid()%100000), hostAddr4)
	if csumErrs == 0 {
		t.Error("no TCP checksum errors counted: the stack took the bad frames' checksums on trust")
	}
	t.Logf("malformed IP packets and fragments counted: %d", malformed)
}

// captureRSTs runs tcpdump on dev for TCP segments with RST set. The
// returned function waits until tcpdump printed a line holding last (the
// RST the test caused last: tcpdump prints in the order of the wire, so
// every earlier one is in by then), stops it and returns what it printed.
// Without tcpdump it returns "" (the reset counters still check).
func captureRSTs(t testing.TB, dev string) func(last string) string {
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Log("tcpdump not installed; RSTs are checked by counters only")
		return func(string) string { return "" }
	}
	cmd := exec.Command(path, "-i", dev, "-n", "-l", "-p", "tcp[tcpflags] & tcp-rst != 0")
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// tcpdump says "listening on" once its filter is in place.
	if _, err := bufio.NewReader(stderr).ReadString('\n'); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	go io.Copy(io.Discard, stderr)
	var mu sync.Mutex
	var lines []string
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	printed := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(lines, "\n")
	}
	return func(last string) string {
		err := testwait.Until(t.Context(), "tcpdump to print "+last, func() error {
			if !strings.Contains(printed(), last) {
				return fmt.Errorf("tcpdump printed %q", printed())
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		cmd.Process.Signal(syscall.SIGINT)
		<-read
		cmd.Wait()
		return strings.TrimSpace(printed())
	}
}

func slicesContains(s []uint16, v uint16) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// runHostStack is the peer mode "hoststack IFACE PORT": a stack on
// host:IFACE listening on PORT, until killed.
func runHostStack(iface, port string) error {
	s, err := ustack.New(ustack.Config{Net: ustack.Host{Iface: iface}})
	if err != nil {
		return err
	}
	ln, err := s.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	defer ln.Close()
	testpeer.Ready()
	select {}
}

// TestHostKilled: a stack process killed with SIGKILL leaves neither its
// ports (the reserving sockets die with it) nor its nftables table (owned
// by its netlink socket, which the kernel removes with it), so the peers
// of its connections are refused at once; the next stack starts cleanly.
func TestHostKilled(t *testing.T) {
	dev, _ := hostVeth(t)
	child := testpeer.Command("hoststack", dev, "8082")
	testpeer.StartReady(t, child)
	table := fmt.Sprintf("ustack_%d", child.Process.Pid)
	if ok, err := hostports.TableExists(table); err != nil || !ok {
		t.Fatalf("table %s of the running stack: exists=%v (%v)", table, ok, err)
	}
	if _, err := net.Listen("tcp", hostAddr4+":8082"); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("port 8082 of the running stack: %v, want EADDRINUSE", err)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	if l, err := net.Listen("tcp", hostAddr4+":8082"); err != nil {
		t.Errorf("port 8082 after SIGKILL: %v, want it free", err)
	} else {
		l.Close()
	}
	if ok, err := hostports.TableExists(table); err != nil || ok {
		t.Errorf("table %s after SIGKILL: exists=%v (%v), want it gone with the process", table, ok, err)
	}
	s := newHostStack(t, dev)
	s.Close()
}

// TestHostErrors: bad host specs name --net and say what to do.
func TestHostErrors(t *testing.T) {
	var ce *ustack.ConfigError
	_, err := ustack.New(ustack.Config{Net: ustack.Host{Iface: "ustk-missing0"}})
	if !errors.As(err, &ce) || ce.Field != "Net" || !strings.Contains(err.Error(), "no such interface") {
		t.Fatalf("missing interface: %v, want a Net error", err)
	}
	for _, iface := range []string{"", "a,b", "a/b"} {
		_, err = ustack.New(ustack.Config{Net: ustack.Host{Iface: iface}})
		if !errors.As(err, &ce) || ce.Field != "Host.Iface" {
			t.Errorf("host with interface %q: %v, want a Host.Iface error", iface, err)
		}
	}
	_, err = ustack.New(ustack.Config{Net: ustack.Host{Iface: "lo", EphemeralPorts: -1}, Addrs: []netip.Prefix{netip.MustParsePrefix("10.79.0.2/24")}})
	if !errors.As(err, &ce) || ce.Field != "Host.EphemeralPorts" {
		t.Errorf("-1 ephemeral ports: %v, want a Host.EphemeralPorts error", err)
	}
	if _, err := ustack.ParseHostPort("53/udp"); err != nil {
		t.Errorf("53/udp: %v", err)
	}
	for _, bad := range []string{"", "0", "70000", "80/sctp", "x"} {
		if _, err := ustack.ParseHostPort(bad); err == nil {
			t.Errorf("ParseHostPort(%q): no error", bad)
		}
	}
}
