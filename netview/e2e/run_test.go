// Package e2e_test holds netview's end-to-end tests: Debian's own programs
// (ip, ss, hostname, python3, java) and a static Go program under `ustack
// run --stack` on a daemon, each compared with what the daemon's control
// API says of its stack. They are a package of their own so that netview's
// unit tests and fuzz target run without building ustack.
package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

var ustackBin, ifacesBin string

func TestMain(m *testing.M) {
	testbin.Run("ustack-netview-test", raceEnabled, map[string]string{"ifaces": "github.com/ustack/ustack/netview/e2e/testdata/ifaces"},
		func(ustack string, bins map[string]string) { ustackBin, ifacesBin = ustack, bins["ifaces"] }, m.Run)
}

// daemon is a stack served by `ustack daemon` in a runtime directory of the
// test's own.
type daemon struct {
	name string
	env  []string
	ctl  *control.Client
}

func startDaemon(t *testing.T) *daemon {
	t.Helper()
	if err := intercept.CheckKernel(); err != nil {
		t.Skipf("this kernel cannot run programs under ustack: %v", err)
	}
	d := &daemon{name: "nv", env: append(cleanEnv(), "XDG_RUNTIME_DIR="+t.TempDir())}
	cmd := exec.Command(ustackBin, "daemon", "--name", d.name)
	cmd.Env = d.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if strings.Contains(stderr.String(), "BUG") || strings.Contains(stderr.String(), "DATA RACE") {
			t.Errorf("the daemon logged a bug:\n%s", stderr.String())
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case line <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-line:
		m := regexp.MustCompile(`ready on (\S+) `).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("daemon said %q", l)
		}
		d.ctl = control.DialPath(d.name, m[1])
	case <-time.After(20 * time.Second):
		t.Fatalf("the daemon did not get ready: %s", stderr.String())
	}
	return d
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "USTACK_") && !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") {
			env = append(env, kv)
		}
	}
	return env
}

// run runs args under `ustack run --stack` on d and returns what it printed.
func (d *daemon) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ustackBin, append([]string{"run", "--stack", d.name, "--"}, args...)...)
	cmd.Env = d.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ustack run %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func (d *daemon) info(t *testing.T) api.Info {
	t.Helper()
	info, err := d.ctl.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// ipJSON is what ip -j addr says of an interface.
type ipJSON struct {
	Index    int      `json:"ifindex"`
	Name     string   `json:"ifname"`
	Flags    []string `json:"flags"`
	MTU      int      `json:"mtu"`
	Address  string   `json:"address"`
	AddrInfo []struct {
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
	Stats64 struct {
		RX struct {
			Bytes   uint64 `json:"bytes"`
			Packets uint64 `json:"packets"`
		} `json:"rx"`
		TX struct {
			Bytes   uint64 `json:"bytes"`
			Packets uint64 `json:"packets"`
		} `json:"tx"`
	} `json:"stats64"`
}

func (i ipJSON) addrs() []string {
	var out []string
	for _, a := range i.AddrInfo {
		out = append(out, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestProgramsSeeTheStack(t *testing.T) {
	d := startDaemon(t)
	info := d.info(t)
	stackAddrs := sorted(info.Addresses)
	t.Logf("the control API says: addresses %v, MTU %d", stackAddrs, info.MTU)

	t.Run("ip addr", func(t *testing.T) {
		testprog.Need(t, "ip")
		var links []ipJSON
		if err := json.Unmarshal([]byte(d.run(t, "ip", "-j", "addr")), &links); err != nil {
			t.Fatal(err)
		}
		if len(links) != 2 || links[0].Name != "lo" || links[0].Index != 1 || links[1].Name != "eth0" || links[1].Index != 2 {
			t.Fatalf("ip addr lists %+v, want lo (1) and eth0 (2)", links)
		}
		if got := sorted(links[1].addrs()); !slices.Equal(got, stackAddrs) {
			t.Errorf("ip addr: eth0 has %v; the stack has %v", got, stackAddrs)
		}
		if links[1].MTU != info.MTU {
			t.Errorf("ip addr: eth0's MTU %d; the stack's %d", links[1].MTU, info.MTU)
		}
		if got := sorted(links[0].addrs()); !slices.Equal(got, []string{"127.0.0.1/8", "::1/128"}) {
			t.Errorf("ip addr: lo has %v", got)
		}
	})
	t.Run("ip route", func(t *testing.T) {
		testprog.Need(t, "ip")
		got := d.run(t, "sh", "-c", "ip route; ip -6 route")
		want := "default via 10.0.2.2 dev eth0 \n" +
			"10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15 \n" +
			"fd00::/64 dev eth0 proto kernel metric 256 pref medium\n" +
			"default via fd00::2 dev eth0 metric 1024 pref medium\n"
		if got != want {
			t.Errorf("ip route said:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("hostname -I", func(t *testing.T) {
		testprog.Need(t, "hostname")
		var want []string
		for _, a := range stackAddrs {
			want = append(want, netip.MustParsePrefix(a).Addr().String())
		}
		if got := sorted(strings.Fields(d.run(t, "hostname", "-I"))); !slices.Equal(got, sorted(want)) {
			t.Errorf("hostname -I: %v, want the stack's %v", got, want)
		}
	})
	t.Run("python if_nameindex", func(t *testing.T) {
		testprog.Need(t, "python3")
		got := strings.TrimSpace(d.run(t, "python3", "-c", "import socket; print(socket.if_nameindex())"))
		if got != "[(1, 'lo'), (2, 'eth0')]" {
			t.Errorf("socket.if_nameindex(): %s", got)
		}
	})
	t.Run("Go net.Interfaces", func(t *testing.T) {
		var out struct {
			Interfaces []struct {
				Index int
				Name  string
				MTU   int
				MAC   string
				Flags string
				Addrs []string
			}
			Addrs []string
		}
		if err := json.Unmarshal([]byte(d.run(t, ifacesBin)), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Interfaces) != 2 {
			t.Fatalf("net.Interfaces: %+v", out.Interfaces)
		}
		lo, eth0 := out.Interfaces[0], out.Interfaces[1]
		if lo.Name != "lo" || lo.Index != 1 || lo.Flags != "up|loopback|running" || eth0.Name != "eth0" || eth0.Index != 2 ||
			eth0.Flags != "up|broadcast|multicast|running" || eth0.MTU != info.MTU || eth0.MAC == "" {
			t.Errorf("net.Interfaces: %+v", out.Interfaces)
		}
		if got := sorted(eth0.Addrs); !slices.Equal(got, stackAddrs) {
			t.Errorf("eth0's Addrs: %v, the stack's %v", got, stackAddrs)
		}
		want := sorted(append([]string{"127.0.0.1/8", "::1/128"}, stackAddrs...))
		if got := sorted(out.Addrs); !slices.Equal(got, want) {
			t.Errorf("net.InterfaceAddrs: %v, want %v", got, want)
		}
	})
	t.Run("Java NetworkInterface", func(t *testing.T) {
		testprog.Need(t, "java")
		javac := testprog.Need(t, "javac")
		dir := t.TempDir()
		if out, err := exec.Command(javac, "-d", dir, "testdata/Ifaces.java").CombinedOutput(); err != nil {
			t.Fatalf("javac: %v\n%s", err, out)
		}
		// Java reads IPv6 addresses from /proc/net/if_inet6, the host's
		// (README: what ustack run does not cover); its IPv4 view is the
		// interface ioctls'.
		got := d.run(t, "java", "-Djava.net.preferIPv4Stack=true", "-cp", dir, "Ifaces")
		var v4 []string
		for _, a := range stackAddrs {
			if netip.MustParsePrefix(a).Addr().Is4() {
				v4 = append(v4, a)
			}
		}
		mac := regexp.MustCompile(`(?m)^2 eth0 .* mac=(\S+) `).FindStringSubmatch(got)
		want := "1 lo mtu=65536 up=true loopback=true mac= addrs=127.0.0.1/8\n" +
			fmt.Sprintf("2 eth0 mtu=%d up=true loopback=false mac=%s addrs=%s\n", info.MTU, macOr(mac), strings.Join(v4, ","))
		if got != want || mac == nil || len(mac[1]) != 17 {
			t.Errorf("NetworkInterface.getNetworkInterfaces():\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("ss", func(t *testing.T) { testSS(t, d) })
}

func macOr(m []string) string {
	if m == nil {
		return "?"
	}
	return m[1]
}

// startServer runs, under ustack run on d, a python program that listens
// on port, connects to itself and holds both until the test ends; it
// returns once the connection is up.
func startServer(t *testing.T, d *daemon, port int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ustackBin, "run", "--stack", d.name, "--", "python3", "-c", fmt.Sprintf(`
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", %d)); s.listen(5)
c = socket.create_connection(("127.0.0.1", %d)); a, _ = s.accept()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", %d))
print("ready", flush=True)
sys.stdin.read()
`, port, port, port))
	cmd.Env = d.env
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait(); cancel() })
	ready := make(chan error, 1)
	go func() {
		l, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && l != "ready\n" {
			err = fmt.Errorf("the server said %q", l)
		}
		ready <- err
		io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not get ready")
	}
}

// ssLine is one socket of ss -tuanpH: netid, state, local, peer and the
// pid of its process.
var v4mapped = regexp.MustCompile(`\[::ffff:([0-9.]+)\]`)

var ssLine = regexp.MustCompile(`^(\S+)\s+(\S+)\s+\d+\s+\d+\s+(\S+)\s+(\S+)\s+users:\(\("[^"]+",pid=(\d+),fd=\d+\)\)`)

func testSS(t *testing.T, d *daemon) {
	testprog.Need(t, "ss")
	testprog.Need(t, "python3")
	startServer(t, d, 8080)
	// The server holds four sockets (listener, client, accepted, UDP);
	// the control API names a socket's process once the stack has
	// recorded who holds it.
	var reply api.SocketsReply
	testwait.ForNil(t, "the control API to name the server's process for its four sockets", func() error {
		reply = api.SocketsReply{}
		if err := d.ctl.Get(context.Background(), "/v1/sockets", &reply); err != nil {
			return err
		}
		n := 0
		for _, s := range reply.Sockets {
			if s.Process != nil {
				n++
			}
		}
		if n < 4 {
			return fmt.Errorf("%d sockets with a process", n)
		}
		return nil
	})
	var want []string
	pids := map[int]bool{}
	for _, s := range reply.Sockets {
		if s.Process == nil {
			continue // the daemon's own
		}
		pids[s.Process.PID] = true
		want = append(want, fmt.Sprint(s.Netid, " ", s.State, " ", ssAddr(s.Local), " ", ssAddr(s.Peer), " ", s.Process.PID))
	}
	out := d.run(t, "ss", "-tuanpiH")
	var got []string
	for _, l := range strings.Split(out, "\n") {
		m := ssLine.FindStringSubmatch(l)
		if m == nil {
			continue // tcp_info lines
		}
		// An AF_INET6 socket's IPv4 connection: ss shows the addresses
		// v4-mapped, as Linux reports them; the control API shows them
		// as IPv4.
		got = append(got, v4mapped.ReplaceAllString(strings.Join(m[1:], " "), "$1"))
	}
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Errorf("ss -tuanpi under ustack run:\n%s\nlisted %q\nthe control API lists %q", out, sorted(got), sorted(want))
	}
	if !strings.Contains(out, "cwnd:") || !strings.Contains(out, "reno") {
		t.Errorf("ss -i shows no tcp_info or congestion control:\n%s", out)
	}
}

// ssAddr writes an address as ss -n does.
func ssAddr(a api.Addr) string {
	host := a.IP
	switch {
	case host == "" && (a.Any || a.V6):
		host = "*"
	case host == "":
		host = "0.0.0.0"
	case strings.Contains(host, ":"):
		host = "[" + host + "]"
	}
	port := fmt.Sprint(a.Port)
	if a.Port == 0 {
		port = "*"
	}
	return host + ":" + port
}

func TestChangesUnderRun(t *testing.T) {
	testprog.Need(t, "ip")
	testprog.Need(t, "python3")
	d := startDaemon(t)
	d.run(t, "ip", "addr", "add", "10.0.2.99/24", "dev", "eth0")
	if info := d.info(t); !slices.Contains(info.Addresses, "10.0.2.99/24") {
		t.Fatalf("after ip addr add under run, the control API says the addresses are %v", info.Addresses)
	}
	// Another program on the same stack reaches a listener there.
	startServer(t, d, 8081)
	got := d.run(t, "python3", "-c", `
import socket
c = socket.create_connection(("10.0.2.99", 8081), timeout=10)
print(c.getsockname()[0], c.getpeername()[0])`)
	if got != "10.0.2.99 10.0.2.99\n" {
		t.Errorf("connecting to 10.0.2.99: %q", got)
	}
	d.run(t, "ip", "link", "set", "eth0", "mtu", "1400")
	d.run(t, "ip", "link", "set", "eth0", "down")
	if got := d.run(t, "ip", "-br", "link", "show", "eth0"); !strings.HasPrefix(got, "eth0             DOWN") {
		t.Errorf("ip link show after ip link set eth0 down: %q", got)
	}
	d.run(t, "ip", "link", "set", "eth0", "up")
	d.run(t, "ip", "route", "add", "192.0.2.0/24", "via", "10.0.2.2")
	if got := d.run(t, "ip", "route", "show", "192.0.2.0/24"); got != "192.0.2.0/24 via 10.0.2.2 dev eth0 \n" {
		t.Errorf("ip route show after ip route add: %q", got)
	}
	d.run(t, "ip", "addr", "del", "10.0.2.99/24", "dev", "eth0")
	info := d.info(t)
	if slices.Contains(info.Addresses, "10.0.2.99/24") || info.MTU != 1400 {
		t.Errorf("after ip addr del and ip link set mtu 1400, the control API says %v, MTU %d", info.Addresses, info.MTU)
	}
	// What the stack cannot do is refused, as the kernel refuses it.
	cmd := exec.Command(ustackBin, "run", "--stack", d.name, "--", "ip", "link", "add", "br0", "type", "bridge")
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot create interfaces") {
		t.Errorf("ip link add under run: %v, %s", err, out)
	}
}

// TestNeighboursAndCounters: after traffic to the gateway, ip neigh has it
// and ip -s link counts the frames.
func TestNeighboursAndCounters(t *testing.T) {
	testprog.Need(t, "ip")
	testprog.Need(t, "python3")
	d := startDaemon(t)
	// A connection to the gateway address (the host's loopback through
	// nat): nothing needs to listen, a refusal is traffic too.
	d.run(t, "python3", "-c", `
import socket
for a in ("10.0.2.2", "fd00::2"):
    try: socket.create_connection((a, 9), timeout=5)
    except OSError: pass`)
	neigh := d.run(t, "ip", "neigh")
	for _, want := range []string{`10\.0\.2\.2`, `fd00::2`} {
		if !regexp.MustCompile(`(?m)^` + want + ` dev eth0 lladdr 52:55:0a:00:02:02 (REACHABLE|STALE|DELAY|PROBE)`).MatchString(neigh) {
			t.Errorf("ip neigh after traffic to 10.0.2.2 and fd00::2 has no entry for %s:\n%s", want, neigh)
		}
	}
	if neigh6 := d.run(t, "ip", "-6", "neigh"); strings.Contains(neigh6, "10.0.2.2") || !strings.Contains(neigh6, "fd00::2") {
		t.Errorf("ip -6 neigh:\n%s", neigh6)
	}
	var links []ipJSON
	if err := json.Unmarshal([]byte(d.run(t, "ip", "-j", "-s", "link", "show", "eth0")), &links); err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Stats64.TX.Packets == 0 || links[0].Stats64.RX.Packets == 0 || links[0].Stats64.TX.Bytes == 0 {
		t.Errorf("ip -s link show eth0 after traffic: %+v", links)
	}
}

// TestOtherNetlinkFamilies: netlink families the stack does not answer
// stay the kernel's: NETLINK_GENERIC resolves a family the kernel has
// (nlctrl, itself), NETLINK_AUDIT opens as the kernel's own socket.
func TestOtherNetlinkFamilies(t *testing.T) {
	testprog.Need(t, "python3")
	d := startDaemon(t)
	got := d.run(t, "python3", "-c", `
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
s.bind((0, 0))
name = b"nlctrl\0"
attr = struct.pack("=HH", 4 + len(name), 2) + name + b"\0" * (-len(name) % 4)  # CTRL_ATTR_FAMILY_NAME
body = struct.pack("=BBH", 3, 1, 0) + attr  # CTRL_CMD_GETFAMILY
s.send(struct.pack("=IHHII", 16 + len(body), 16, 1 | 4, 1, 0) + body)  # GENL_ID_CTRL, NLM_F_REQUEST|NLM_F_ACK
reply = s.recv(65536)
print(struct.unpack("=H", reply[4:6])[0], s.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL))
a = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)  # NETLINK_AUDIT
print(a.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL))`)
	if got != "16 16\n9\n" {
		t.Errorf("NETLINK_GENERIC and NETLINK_AUDIT sockets under ustack run: %q, want the kernel's answer (type 16, GENL_ID_CTRL) and protocols 16 and 9", got)
	}
}
