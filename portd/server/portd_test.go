package server_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/portd/server"
)

// The end-to-end tests share a veth between the root namespace's kernel and
// the stacks of unprivileged clients: dev (10.78.0.2/24, fd78::2/64) is the
// host interface, its peer sits in a namespace of the test's own
// (10.78.0.1/24, fd78::1/64). portd runs as root (in the test process or as
// a child); clients are the test binary re-run as nobody (uid 65534) or
// uid 65533, so the kernel, not the test, says who they are.
const (
	hostAddr4   = "10.78.0.2"
	remoteAddr4 = "10.78.0.1"
	remoteAddr6 = "fd78::1"
	nobody      = 65534
	otherUser   = 65533
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("USTACK_PORTD_TEST"); mode != "" {
		if err := runChild(strings.Fields(mode)); err != nil {
			fmt.Println("error:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type testNet struct {
	dev     string
	ifindex int
	ns      string
	dir     string // world-readable: the client binary and the socket
	bin     string
}

// setup creates the veth and namespace and a directory that nobody can
// read, with a copy of the test binary in it.
func setup(t testing.TB) *testNet {
	t.Helper()
	testbin.EndToEnd(t)
	if os.Geteuid() != 0 {
		t.Skip("portd tests need root (they run portd, and clients as other users)")
	}
	ipPath := testprog.Need(t, "ip")
	if _, err := hostports.TableExists("ustack_0"); err != nil {
		t.Skip("portd tests need nftables in the kernel: ", err)
	}
	n := &testNet{
		ns:  fmt.Sprintf("ustack-portd-%d", os.Getpid()),
		dev: fmt.Sprintf("ustd%d", os.Getpid()%100000),
	}
	peer := fmt.Sprintf("ustq%d", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipPath, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", n.ns)
	t.Cleanup(func() { exec.Command(ipPath, "netns", "del", n.ns).Run() })
	run("link", "add", n.dev, "type", "veth", "peer", "name", peer, "netns", n.ns)
	t.Cleanup(func() { exec.Command(ipPath, "link", "del", n.dev).Run() })
	run("addr", "add", hostAddr4+"/24", "dev", n.dev)
	run("-6", "addr", "add", "fd78::2/64", "dev", n.dev, "nodad")
	run("link", "set", n.dev, "up")
	run("-n", n.ns, "addr", "add", remoteAddr4+"/24", "dev", peer)
	run("-n", n.ns, "-6", "addr", "add", remoteAddr6+"/64", "dev", peer, "nodad")
	run("-n", n.ns, "link", "set", peer, "up")
	ifi, err := net.InterfaceByName(n.dev)
	if err != nil {
		t.Fatal(err)
	}
	n.ifindex = ifi.Index

	if n.dir, err = os.MkdirTemp("", "ustack-portd-test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(n.dir) })
	os.Chmod(n.dir, 0o755)
	n.bin = filepath.Join(n.dir, "client.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *testNet) sock() string { return filepath.Join(n.dir, "portd.sock") }

func (n *testNet) policy(t testing.TB) string {
	text := fmt.Sprintf("allow user:%d %s tcp,udp 8080-8090,ephemeral\nallow user:%d %s tcp,udp 8080-8090,ephemeral\n",
		nobody, n.dev, otherUser, n.dev)
	path := filepath.Join(n.dir, "portd.policy")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// logLines collects portd's log.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// startServer runs portd in the test process.
func (n *testNet) startServer(t testing.TB) (*server.Server, *logLines) {
	t.Helper()
	pol, err := server.LoadPolicy(n.policy(t))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	srv, err := server.Listen(n.sock(), pol, logs.logf)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(t.Context())
	t.Cleanup(func() {
		srv.Close()
		logs.mu.Lock()
		for _, l := range logs.lines {
			t.Log(l)
		}
		logs.mu.Unlock()
	})
	return srv, logs
}

// child runs the test binary in a child mode as uid (0 is root), in the
// namespace if inNS.
type child struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

func (n *testNet) start(t testing.TB, uid int, inNS bool, mode ...string) *child {
	t.Helper()
	var cmd *exec.Cmd
	if inNS {
		cmd = exec.Command("ip", "netns", "exec", n.ns, n.bin)
	} else {
		cmd = exec.Command(n.bin)
	}
	cmd.Env = append(os.Environ(), "USTACK_PORTD_TEST="+strings.Join(mode, " "))
	cmd.Dir = n.dir
	cmd.Stderr = os.Stderr
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: bufio.NewReader(out)}
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

// line reads the child's next line of output, failing after a while.
func (c *child) line(t testing.TB) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		s, err := c.out.ReadString('\n')
		if err != nil && s == "" {
			s = "(" + err.Error() + ")"
		}
		got <- strings.TrimSpace(s)
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(30 * time.Second):
		t.Fatalf("no output from %s", c.cmd.Env[len(c.cmd.Env)-1])
		return ""
	}
}

func (c *child) expect(t testing.TB, want string) {
	t.Helper()
	if got := c.line(t); got != want {
		t.Fatalf("%s: %q, want %q", c.cmd.Env[len(c.cmd.Env)-1], got, want)
	}
}

// TestPortdInterop: a stack of nobody on host:dev through portd pings the
// namespace's kernel (IPv4 and IPv6), sends to a kernel server and serves a
// kernel client, with SHA-256 over the bytes both ways, and portd refuses
// none of its frames.
func TestPortdInterop(t *testing.T) {
	n := setup(t)
	srv, _ := n.startServer(t)
	size := "16777216"

	sink := n.start(t, 0, true, "tcpsink", remoteAddr4+":9001")
	sink.expect(t, "ready")
	dial := n.start(t, nobody, false, "dial", n.sock(), n.dev, remoteAddr4+":9001", size)
	dial.expect(t, "ok")

	hold := n.start(t, nobody, false, "hold", n.sock(), n.dev, "8081")
	hold.expect(t, "ready")
	send := n.start(t, 0, true, "tcpsend", hostAddr4+":8081", size)
	send.expect(t, "ok")

	hs := srv.Holders()
	if len(hs) != 1 {
		t.Fatalf("%d holders, want the listening stack only: %+v", len(hs), hs)
	}
	h := hs[0]
	if h.UID != nobody || h.PID != int32(hold.cmd.Process.Pid) || h.Iface != n.dev {
		t.Errorf("holder %+v, want uid %d pid %d on %s", h, nobody, hold.cmd.Process.Pid, n.dev)
	}
	if h.Sent == 0 || h.Received == 0 || h.Refused != 0 {
		t.Errorf("holder's frames: sent %d, received %d, refused %d; want traffic and no refusals", h.Sent, h.Received, h.Refused)
	}
	if !contains(h.TCP, 8081) || len(h.UDP) == 0 {
		t.Errorf("holder's ports tcp %v udp %v, want 8081 and an ephemeral block", h.TCP, h.UDP)
	}
}

func contains(s []uint16, v uint16) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestPortdRefusals: ports the policy does not grant, privileged ports,
// ports another user holds and ports a host program holds are refused with
// a clear error, and portd logs each refusal.
func TestPortdRefusals(t *testing.T) {
	n := setup(t)
	_, logs := n.startServer(t)
	other := n.start(t, otherUser, false, "hold", n.sock(), n.dev, "8085")
	other.expect(t, "ready")
	hostHeld, err := net.Listen("tcp", hostAddr4+":8086")
	if err != nil {
		t.Fatal(err)
	}
	defer hostHeld.Close()

	for _, tc := range []struct {
		port, want string
	}{
		{"9000", "tcp port 9000 on " + n.dev + " for nobody (uid 65534)"},
		{"80", "it is privileged and no rule names it"},
		{"8085", "held by 65533 (uid 65533)"},
		{"8086", "the host already uses it"},
	} {
		t.Run(tc.port, func(t *testing.T) {
			before := logs.count("refused: tcp port " + tc.port + " ")
			c := n.start(t, nobody, false, "open", n.sock(), n.dev, tc.port)
			line := c.line(t)
			if !strings.HasPrefix(line, "error: Host.Ports: ustack portd refused: ") || !strings.Contains(line, tc.want) {
				t.Errorf("client: %q, want a refusal containing %q", line, tc.want)
			}
			c.cmd.Wait()
			if c.cmd.ProcessState.ExitCode() != 3 {
				t.Errorf("client exit status %d, want 3 (refused)", c.cmd.ProcessState.ExitCode())
			}
			if logs.count("refused: tcp port "+tc.port+" ") != before+1 {
				t.Errorf("portd logged no refusal of port %s", tc.port)
			}
		})
	}
	// The same port granted and free works, as a control.
	c := n.start(t, nobody, false, "open", n.sock(), n.dev, "8087")
	c.expect(t, "ok")
}

// TestPortdForgedFrames: frames a client writes to its frame socket with a
// forged source address, port or MAC, with a checksum request that would
// rewrite the source port, or with a source route, are dropped and
// counted; a correct frame sent after them arrives alone.
func TestPortdForgedFrames(t *testing.T) {
	n := setup(t)
	srv, logs := n.startServer(t)
	sink := n.start(t, 0, true, "udpsink", remoteAddr4+":9999")
	sink.expect(t, "ready")
	forge := n.start(t, nobody, false, "forge", n.sock(), n.dev, remoteAddr4+":9999")
	forge.expect(t, "sent 7 forged")
	// The forged frames went first, on the same socket and wire: any
	// that passed would have arrived before the valid one.
	if got := sink.line(t); got != "valid" {
		t.Fatalf("the namespace received %q first, want only the valid datagram", got)
	}
	// portd counts a batch once the kernel took it, a moment after the
	// sink may have it.
	testwait.For(t, "portd's count of the valid frame", func() bool {
		hs := srv.Holders()
		return len(hs) == 1 && hs[0].Sent > 0
	})
	hs := srv.Holders()
	if len(hs) != 1 || hs[0].Refused != 7 || hs[0].Sent != 1 {
		t.Fatalf("holders %+v, want one with 7 frames refused and 1 sent", hs)
	}
	if got := logs.count("refused a frame"); got != 1 {
		t.Errorf("portd logged %d frame refusals, want the first one only", got)
	}
}

// packetSockets counts the packet sockets bound to ifindex.
func packetSockets(t *testing.T, ifindex int) int {
	b, err := os.ReadFile("/proc/net/packet")
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == strconv.Itoa(ifindex) {
			count++
		}
	}
	return count
}

// held reports what of a session is still on the host.
func (n *testNet) leftovers(t *testing.T, table string, port int, sockets int) []string {
	var left []string
	if ok, err := hostports.TableExists(table); err != nil || ok {
		left = append(left, fmt.Sprintf("nftables table %s (%v)", table, err))
	}
	if l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", hostAddr4, port)); err != nil {
		left = append(left, fmt.Sprintf("port %d: %v", port, err))
	} else {
		l.Close()
	}
	if got := packetSockets(t, n.ifindex); got != sockets {
		left = append(left, fmt.Sprintf("%d packet sockets on the interface, want %d", got, sockets))
	}
	return left
}

// TestPortdClientKilled: within 1 s of a SIGKILL to a non-root stack, its
// reserving sockets, packet socket (and so its filter) and nftables table
// are gone.
func TestPortdClientKilled(t *testing.T) {
	n := setup(t)
	srv, _ := n.startServer(t)
	sockets := packetSockets(t, n.ifindex)
	hold := n.start(t, nobody, false, "hold", n.sock(), n.dev, "8082")
	hold.expect(t, "ready")
	hs := srv.Holders()
	if len(hs) != 1 {
		t.Fatalf("holders %+v, want one", hs)
	}
	table := hs[0].Table
	if left := n.leftovers(t, table, 8082, sockets); len(left) != 3 {
		t.Fatalf("while the stack runs, want its table, port and packet socket in place; have only: %v", left)
	}
	hold.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	hold.cmd.Wait()
	testwait.ForNil(t, "the killed stack's release", func() error {
		if left := n.leftovers(t, table, 8082, sockets); len(left) != 0 || len(srv.Holders()) != 0 {
			return fmt.Errorf("still held: %v (holders %+v)", left, srv.Holders())
		}
		return nil
	})
	if took := time.Since(killed); took > time.Second {
		t.Fatalf("everything released only %v after SIGKILL, want within 1 s", took.Round(time.Millisecond))
	} else {
		t.Logf("everything released %v after SIGKILL", took.Round(time.Millisecond))
	}
}

// stream is n bytes of a seeded pseudo-random stream.
func stream(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{7}), n)
}

func sum(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return fmt.Sprintf("%x", h.Sum(nil)), n, err
}

// wantSum is the hash of stream(n).
func wantSum(n int64) string {
	s, _, _ := sum(stream(n))
	return s
}

// TestPortdCloseWaitsForReleases: a session whose client just exited may
// already be gone from the holders while portd still removes its table;
// Close returns only once that is done, so that a portd stopped at that
// moment leaves no table behind.
func TestPortdCloseWaitsForReleases(t *testing.T) {
	n := setup(t)
	srv, logs := n.startServer(t)
	hold := n.start(t, nobody, false, "hold", n.sock(), n.dev, "8084")
	hold.expect(t, "ready")
	hs := srv.Holders()
	if len(hs) != 1 {
		t.Fatalf("holders %+v, want one", hs)
	}
	table := hs[0].Table
	hold.kill()
	testwait.For(t, "the killed client's session to leave the holders", func() bool { return len(srv.Holders()) == 0 })
	srv.Close()
	if ok, err := hostports.TableExists(table); err != nil || ok {
		t.Errorf("table %s once Close returned: exists=%v (%v), want it removed", table, ok, err)
	}
	if logs.count("released everything") != 1 {
		t.Errorf("portd's log has %d releases once Close returned, want 1", logs.count("released everything"))
	}
}

// TestPortdCloseDuringOpen: portd stopped while a session is being set up
// releases that session whole once its set-up ends; before, the set-up went
// on after the release and its nftables table outlived portd.
func TestPortdCloseDuringOpen(t *testing.T) {
	n := setup(t)
	srv, _ := n.startServer(t)
	closed := make(chan struct{})
	hooked := make(chan error, 1)
	server.SetOpenHookForTest(func() {
		go func() { srv.Close(); close(closed) }()
		// The set-up goes on once Close has gone as far as it may: it has
		// returned, or it waits for this set-up to end.
		hooked <- testwait.Until(context.Background(), "Close to return or to wait for the set-up", func() error {
			select {
			case <-closed:
				return nil
			default:
			}
			if closeWaitsForOpen() {
				return nil
			}
			return errors.New("Close still runs")
		})
	})
	t.Cleanup(func() { server.SetOpenHookForTest(nil) })
	hold := n.start(t, nobody, false, "hold", n.sock(), n.dev, "8084")
	defer hold.kill()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-hooked; err != nil {
		t.Fatal(err)
	}
	// The client's first line (or its exit) comes once its set-up has
	// ended; a table that set-up made after the release is there by then.
	t.Logf("the client said %q", hold.line(t))
	table := fmt.Sprintf("%s%d_1", hostports.PortdTablePrefix, os.Getpid())
	if ok, err := hostports.TableExists(table); err != nil || ok {
		t.Fatalf("table %s after Close returned: exists=%v (%v), want none", table, ok, err)
	}
}

// closeWaitsForOpen reports whether a goroutine in Server.Close is blocked
// on a session's lock, which a set-up in progress holds.
func closeWaitsForOpen() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[sync.Mutex.Lock") && strings.Contains(g, "server.(*session).close(") && strings.Contains(g, "server.(*Server).Close(") {
			return true
		}
	}
	return false
}

// TestPortdSuccessorWaitsForRelease: a client that asks for a port its
// predecessor held while portd is still releasing the predecessor's
// session (the client exited a moment ago) gets the port once that
// release is done; before, it was refused because the host, for that
// moment, still held the port.
func TestPortdSuccessorWaitsForRelease(t *testing.T) {
	n := setup(t)
	_, logs := n.startServer(t)
	entered, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	server.SetReleaseHookForTest(func() {
		once.Do(func() {
			close(entered)
			<-proceed
		})
	})
	t.Cleanup(func() { server.SetReleaseHookForTest(nil) })
	var proceedOnce sync.Once
	letGo := func() { proceedOnce.Do(func() { close(proceed) }) }
	t.Cleanup(letGo) // a failed wait below leaves no release stuck in the hook
	first := n.start(t, nobody, false, "hold", n.sock(), n.dev, "8088")
	first.expect(t, "ready")
	first.kill()
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the first client's session was not released")
	}
	second := n.start(t, nobody, false, "open", n.sock(), n.dev, "8088")
	var refused bool
	testwait.For(t, "the second client to wait for the first one's release (or be refused)", func() bool {
		refused = logs.count("refused: tcp port 8088") > 0
		return refused || logs.count("waits for session 1 to release tcp port 8088") > 0
	})
	if refused {
		letGo()
		t.Fatalf("the second client did not wait for the first one's release; it said %q", second.line(t))
	}
	letGo()
	second.expect(t, "ok")
}
