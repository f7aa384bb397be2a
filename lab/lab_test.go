package lab_test

// These tests bring labs up with the real ustack binary (built once in
// TestMain) as the nodes' processes, and run a small test program on the
// nodes with ustack lab exec. Each test's control sockets are in a
// directory of the run's own (XDG_RUNTIME_DIR), which must be empty again
// when a lab is down.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/internal/realtime"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/lab"
)

var ustackBin, labprog string

func TestMain(m *testing.M) {
	// The node binary is built without the race detector: the pinned
	// netstack's IPv4 forwarding reads a header it has released (see
	// ipv4ForwardingRaces in the ustack package's tests), which the
	// detector reports in every router. The lab process's code runs in
	// this test binary, under -race when the tests are.
	testbin.Run("ustack-lab-test", false, map[string]string{"labprog": "github.com/ustack/ustack/lab/testdata/labprog"},
		func(u string, bins map[string]string) { ustackBin, labprog = u, bins["labprog"] },
		func() int {
			dir, err := os.MkdirTemp("", "ustack-lab-run")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			os.Setenv("XDG_RUNTIME_DIR", dir)
			return m.Run()
		})
}

// controlFiles lists what is in the control directory.
func controlFiles(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(control.Dir())
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// alive reports whether process pid exists (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// checkGone fails unless every pid has exited and the control directory
// holds nothing of lab name's.
func checkGone(t testing.TB, name string, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		testwait.For(t, fmt.Sprintf("process %d to exit", pid), func() bool { return !alive(pid) })
	}
	var left []string
	for _, f := range controlFiles(t) {
		if strings.HasPrefix(f, name+".") {
			left = append(left, f)
		}
	}
	if len(left) != 0 {
		t.Errorf("lab %s left in the control directory: %v", name, left)
	}
}

func writeTopology(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// upLab starts the lab in this process, serving until the test ends;
// then it is taken down and must leave nothing behind.
func upLab(t testing.TB, path, name string) (*lab.Lab, lab.Status) {
	t.Helper()
	return upLabWith(t, path, name, lab.Options{})
}

// upLabWith is upLab with options (their node command and log are the
// test's).
func upLabWith(t testing.TB, path, name string, opts lab.Options) (*lab.Lab, lab.Status) {
	t.Helper()
	topo, err := lab.Load(path, name)
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "lab.log"))
	if err != nil {
		t.Fatal(err)
	}
	opts.NodeCommand, opts.Log = []string{ustackBin, "lab", "_node"}, logFile
	l, err := lab.Up(topo, opts)
	if err != nil {
		logFile.Close()
		log, _ := os.ReadFile(logFile.Name())
		t.Fatalf("lab up: %v\nlab log:\n%s", err, log)
	}
	st := l.Status()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- l.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serving the lab: %v", err)
		}
		var pids []int
		for _, n := range st.Nodes {
			pids = append(pids, n.PID)
		}
		checkGone(t, st.Name, pids...)
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("lab log:\n%s", log)
		}
	})
	return l, st
}

// program is a test program running on a node under ustack lab exec.
type program struct {
	cmd    *exec.Cmd
	lines  chan string // the program's output, closed at its end
	stderr *bytes.Buffer
}

// lineTimeout bounds the wait for a program's next line, so that a program
// that hangs fails its test with what it said instead of hanging the package.
const lineTimeout = 2 * time.Minute

// execOn starts labprog args on node, under ustack lab exec.
func execOn(t testing.TB, labName, node string, args ...string) *program {
	t.Helper()
	cmd := exec.Command(ustackBin, append([]string{"lab", "exec", labName, node, "--", labprog}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &program{cmd: cmd, lines: make(chan string, 16), stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	// The program on the node is lab exec's child and may hold stderr a
	// little longer than lab exec lives.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		s := bufio.NewScanner(out)
		for s.Scan() {
			p.lines <- s.Text()
		}
	}()
	t.Cleanup(func() {
		// lab exec passes SIGTERM on to the program, which ends; SIGKILL
		// would end lab exec alone.
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return p
}

// line waits for the program's next line of output.
func (p *program) line(t testing.TB) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			err := p.cmd.Wait()
			t.Fatalf("%v: no more output (%v); stderr: %s", p.cmd.Args[5:], err, p.stderr)
		}
		return l
	case <-time.After(lineTimeout):
		p.cmd.Process.Kill()
		p.cmd.Wait()
		t.Fatalf("%v: no line within %v; stderr: %s", p.cmd.Args[5:], lineTimeout, p.stderr)
		return ""
	}
}

// wait waits for the program to exit and fails unless it succeeded.
func (p *program) wait(t testing.TB) {
	t.Helper()
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("%v: %v; stderr: %s", p.cmd.Args[5:], err, p.stderr)
	}
}

// transfer sends size bytes from node from (listening on addr) to node to
// over TCP, and checks the SHA-256 of what arrived.
func transfer(t testing.TB, labName, from, to, addr string, size int64) {
	t.Helper()
	transferBetween(t, labName, from, labName, to, addr, size)
}

// transferBetween is transfer from a node of one lab to a node of another.
func transferBetween(t testing.TB, fromLab, from, toLab, to, addr string, size int64) {
	t.Helper()
	srv := execOn(t, fromLab, from, "serve", addr, strconv.FormatInt(size, 10))
	if l := srv.line(t); !strings.HasPrefix(l, "listening ") {
		t.Fatalf("server said %q", l)
	}
	cl := execOn(t, toLab, to, "fetch", addr)
	got := cl.line(t)
	cl.wait(t)
	srv.wait(t)
	if want := fmt.Sprintf("bytes %d sha256 %s", size, streamSum(size)); got != want {
		t.Fatalf("%s -> %s: %q, want %q", from, to, got, want)
	}
}

// streamSum is the SHA-256 of the first size bytes of labprog's stream.
func streamSum(size int64) string {
	h := sha256.New()
	io.Copy(h, io.LimitReader(rand.NewChaCha8([32]byte{'l', 'a', 'b'}), size))
	return fmt.Sprintf("%x", h.Sum(nil))
}

// ping has node ping host count times and returns the replies' RTTs.
func ping(t testing.TB, labName, node, host string, count int) []time.Duration {
	t.Helper()
	var out bytes.Buffer
	c := control.Dial(lab.NodeSocketName(labName, node))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.Ping(ctx, api.PingRequest{Host: host, Count: count, Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, Size: 56}, &out)
	if err != nil {
		t.Fatalf("%s: ping %s: %v", node, host, err)
	}
	if n != count {
		t.Fatalf("%s: ping %s: %d of %d replies:\n%s", node, host, n, count, out.String())
	}
	return rtts(out.String())
}

// pingSome is ping over a lossy path: it wants a reply, not all.
func pingSome(t testing.TB, labName, node, host string, count int) []time.Duration {
	t.Helper()
	var out bytes.Buffer
	c := control.Dial(lab.NodeSocketName(labName, node))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.Ping(ctx, api.PingRequest{Host: host, Count: count, Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, Size: 56}, &out)
	if err != nil || n == 0 {
		t.Fatalf("%s: ping %s: %d of %d replies (%v):\n%s", node, host, n, count, err, out.String())
	}
	return rtts(out.String())
}

func rtts(pingOutput string) []time.Duration {
	var ds []time.Duration
	for _, m := range regexp.MustCompile(`time=([0-9.]+) ms`).FindAllStringSubmatch(pingOutput, -1) {
		ms, _ := strconv.ParseFloat(m[1], 64)
		ds = append(ds, time.Duration(ms*float64(time.Millisecond)))
	}
	return ds
}

func minDuration(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func examplePath(name string) string { return filepath.Join("..", "examples", name, name+".yaml") }

// rump's routing setup: two subnets and a router, ping and TCP through the
// router, both families.
func TestRoutingExample(t *testing.T) {
	testbin.EndToEnd(t)
	_, st := upLab(t, examplePath("routing"), "")
	if len(st.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(st.Nodes))
	}
	ping(t, "routing", "h1", "10.0.2.10", 3)
	ping(t, "routing", "h1", "fd02::10", 3)
	ping(t, "routing", "h2", "10.0.1.1", 3)
	transfer(t, "routing", "h2", "h1", "10.0.2.10:5001", 8<<20)
	transfer(t, "routing", "h1", "h2", "[fd01::10]:5002", 2<<20)
	echo := execOn(t, "routing", "h2", "echo", "10.0.2.10:7")
	echo.line(t)
	rtt := execOn(t, "routing", "h1", "rtt", "10.0.2.10:7", "50")
	t.Logf("UDP echo through the router: %s", rtt.line(t))
	rtt.wait(t)

	// The stack commands reach a node as LAB/NODE: the router's counters
	// show what it forwarded (the 8 MB came in on eth1 and left on eth0).
	out, errOut, code := runUstack(t, "stats", "routing/r1")
	if code != 0 {
		t.Fatalf("ustack stats routing/r1: status %d: %s", code, errOut)
	}
	m := regexp.MustCompile(`NicTxPackets\{nic=eth0\}\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ustack stats routing/r1 has no NicTxPackets for eth0:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n < (8<<20)/1500 {
		t.Errorf("r1 sent %d packets on eth0, want at least the 8 MB's %d", n, (8<<20)/1500)
	}
	if _, errOut, code := runUstack(t, "ss", "-tan", "routing/h1"); code != 0 {
		t.Errorf("ustack ss -tan routing/h1: status %d: %s", code, errOut)
	}
}

// The dumbbell: a 10 Mbit/s, 20 ms bottleneck between two routers; Reno
// from s1 and CUBIC from s2 at once, each to its receiver; the drawing of
// the running lab names its nodes, addresses and the bottleneck's shape.
func TestDumbbellExample(t *testing.T) {
	testbin.EndToEnd(t)
	_, st := upLab(t, examplePath("dumbbell"), "")
	if len(st.Nodes) != 6 || len(st.Links) != 5 {
		t.Fatalf("%d nodes and %d links, want 6 and 5", len(st.Nodes), len(st.Links))
	}
	if m := minDuration(ping(t, "dumbbell", "s1", "10.2.1.10", 3)); m < 40*time.Millisecond {
		t.Errorf("RTT %v across a bottleneck of 20 ms each way, want at least 40ms", m)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		transfer(t, "dumbbell", "s1", "d1", "10.1.1.10:5001", 1<<20)
	}()
	transfer(t, "dumbbell", "s2", "d2", "10.1.2.10:5001", 1<<20)
	<-done

	out, errOut, code := runUstack(t, "lab", "graph", "dumbbell")
	if code != 0 || !strings.Contains(out, "rate 10mbit limit 34 delay 20ms") || !strings.Contains(out, "eth0 10.2.1.10/24") {
		t.Errorf("lab graph dumbbell: status %d, %s%s", code, out, errOut)
	}
	testprog.Need(t, "dot")
	svg := filepath.Join(t.TempDir(), "dumbbell.svg")
	if _, errOut, code := runUstack(t, "lab", "graph", "dumbbell", "-o", svg); code != 0 {
		t.Fatalf("lab graph -o %s: status %d: %s", svg, code, errOut)
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", ">s1</text>", "cc reno", "10.0.0.2/30", "rate 10mbit"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the drawing lacks %q", want)
		}
	}
}

// The satellite link: 600 ms of RTT and 1% loss each way; a transfer
// still arrives whole. The nodes, started after realtime.Raise, inherit
// the real-time policy: the link's delay line releases frames on time
// however busy the machine is (once, at load 8 under the race detector,
// the shortest of four round trips was 893 ms). Under the race detector,
// which slows the nodes several times over, the upper bound is only
// logged.
func TestSatelliteExample(t *testing.T) {
	testbin.EndToEnd(t)
	realtime.Raise(t)
	upLab(t, examplePath("satellite"), "")
	// The first round trip resolves the neighbour; pings sent meanwhile
	// wait for it.
	pingSome(t, "satellite", "ground", "10.7.0.2", 2)
	rtts := pingSome(t, "satellite", "ground", "10.7.0.2", 4)
	switch m := minDuration(rtts); {
	case m < 600*time.Millisecond:
		t.Errorf("RTT %v over the satellite link, want at least 600 ms", m)
	case m > 800*time.Millisecond && raceEnabled:
		t.Logf("RTT %v over the satellite link, above 800 ms: not held under the race detector", m)
	case m > 800*time.Millisecond:
		t.Errorf("RTT %v over the satellite link, want 600 to 800 ms", m)
	}
	transfer(t, "satellite", "remote", "ground", "[fd07::2]:5001", 256<<10)
}

// Two labs of one file run at once under different names.
func TestTwoLabs(t *testing.T) {
	testbin.EndToEnd(t)
	upLab(t, examplePath("routing"), "one")
	upLab(t, examplePath("routing"), "two")
	ping(t, "one", "h1", "10.0.2.10", 2)
	ping(t, "two", "h1", "10.0.2.10", 2)
	labs, err := lab.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(labs) != 2 || labs[0].Name != "one" || labs[1].Name != "two" {
		t.Errorf("lab ls found %v, want one and two", labs)
	}
}

func runUstack(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ustackBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// ustack lab up -d, a program on a node, ustack lab down: the nodes, the
// program and every file are gone when down returns.
func TestDownLeavesNothing(t *testing.T) {
	testbin.EndToEnd(t)
	out, errOut, code := runUstack(t, "lab", "up", "-d", "--name", "downtest", examplePath("routing"))
	if code != 0 {
		t.Fatalf("lab up -d: status %d: %s%s", code, out, errOut)
	}
	if !strings.Contains(out, "lab downtest: up, 3 nodes, 2 links") {
		t.Errorf("lab up -d said %q", out)
	}
	st, err := (&lab.Client{Name: "downtest"}).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sleeper := execOn(t, "downtest", "h2", "echo", "10.0.2.10:7")
	sleeper.line(t)
	out, errOut, code = runUstack(t, "lab", "down", "downtest")
	if code != 0 || !strings.Contains(out, "lab downtest: down (3 nodes stopped)") {
		t.Fatalf("lab down: status %d: %s%s", code, out, errOut)
	}
	// The files are gone when down returns; the processes a moment later.
	if files := controlFiles(t); len(files) != 0 {
		t.Errorf("after lab down: %v", files)
	}
	pids := []int{st.PID, sleeper.cmd.Process.Pid}
	for _, n := range st.Nodes {
		pids = append(pids, n.PID)
	}
	if err := sleeper.cmd.Wait(); err == nil {
		t.Errorf("the program on the node exited with status 0 after its node went down")
	}
	checkGone(t, "downtest", pids...)
	if _, _, code := runUstack(t, "lab", "down", "downtest"); code != 1 {
		t.Errorf("lab down of a lab that is not up: status %d, want 1", code)
	}
}

// startLabProcess runs ustack lab up in the foreground as a child and waits
// until the lab answers.
func startLabProcess(t *testing.T, name string) (*exec.Cmd, lab.Status) {
	t.Helper()
	cmd := exec.Command(ustackBin, "lab", "up", "--name", name, examplePath("routing"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var st lab.Status
	testwait.For(t, "the lab to be up", func() bool {
		var err error
		st, err = (&lab.Client{Name: name}).Status(context.Background())
		return err == nil
	})
	return cmd, st
}

// Ctrl-C on ustack lab up takes the lab down: nothing is left.
func TestInterruptLeavesNothing(t *testing.T) {
	testbin.EndToEnd(t)
	cmd, st := startLabProcess(t, "ctrlc")
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("lab up after SIGINT: %v", err)
	}
	var pids []int
	for _, n := range st.Nodes {
		pids = append(pids, n.PID)
	}
	checkGone(t, "ctrlc", pids...)
}

// kill -9 of a node: its files go at once, its neighbours see their links
// down, the rest of the lab goes on; kill -9 of the lab process then: the
// remaining nodes go by themselves, and so does every file.
func TestKillLeavesNothing(t *testing.T) {
	testbin.EndToEnd(t)
	cmd, st := startLabProcess(t, "kill9")
	var r1, h1 lab.NodeStatus
	for _, n := range st.Nodes {
		switch n.Name {
		case "r1":
			r1 = n
		case "h1":
			h1 = n
		}
	}
	syscall.Kill(r1.PID, syscall.SIGKILL)
	testwait.For(t, "r1's socket to go", func() bool {
		_, err := os.Stat(control.SocketPath("kill9.r1"))
		return os.IsNotExist(err)
	})
	cl := &lab.Client{Name: "kill9"}
	testwait.For(t, "h1's link to r1 to be down", func() bool {
		r, err := cl.Node(context.Background(), "h1")
		return err == nil && len(r.Interfaces) == 1 && r.Interfaces[0].Down
	})
	st2, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st2.Nodes {
		want := "running"
		if n.Name == "r1" {
			want = "killed by signal 9 (killed)"
		}
		if n.State != want {
			t.Errorf("%s's state %q, want %s", n.Name, n.State, want)
		}
	}
	testwait.For(t, "h2's link to r1 to be down", func() bool {
		r, err := cl.Node(context.Background(), "h2")
		return err == nil && len(r.Interfaces) == 1 && r.Interfaces[0].Down
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	checkGone(t, "kill9", h1.PID, r1.PID)
	var pids []int
	for _, n := range st.Nodes {
		pids = append(pids, n.PID)
	}
	checkGone(t, "kill9", pids...)
}

// The link's shape applies at each end's egress: delay 10ms on both
// h1-r1 and r1-h2 makes a round trip of at least 40 ms; a spec set live
// adds to it.
func TestShapedLinks(t *testing.T) {
	testbin.EndToEnd(t)
	path := writeTopology(t, `
name: shaped
topology:
  nodes:
    h1: {interfaces: {eth0: 10.0.1.10/24}, routes: [default via 10.0.1.1]}
    r1: {kind: router, interfaces: {eth0: 10.0.1.1/24, eth1: 10.0.2.1/24}}
    h2: {interfaces: {eth0: 10.0.2.10/24}, routes: [default via 10.0.2.1]}
  links:
    - endpoints: [h1:eth0, r1:eth0]
      shape: delay 10ms
    - endpoints: [r1:eth1, h2:eth0]
      shape:
        r1:eth1: delay 10ms rate 100mbit
        h2:eth0: delay 10ms
`)
	upLab(t, path, "")
	rtts := ping(t, "shaped", "h1", "10.0.2.10", 5)
	if m := minDuration(rtts); m < 40*time.Millisecond {
		t.Errorf("RTT %v through two links of 10 ms each way, want at least 40ms", m)
	}
	t.Logf("RTT with 4 x 10 ms: %v", rtts)
	cl := &lab.Client{Name: "shaped"}
	if _, err := cl.SetLink(context.Background(), "h2", api.LinkRequest{Dev: "eth0", Direction: "egress", Spec: "delay 30ms"}); err != nil {
		t.Fatal(err)
	}
	rtts = ping(t, "shaped", "h1", "10.0.2.10", 3)
	if m := minDuration(rtts); m < 60*time.Millisecond {
		t.Errorf("RTT %v after h2:eth0's egress went to 30 ms, want at least 60ms", m)
	}
	r, err := cl.Node(context.Background(), "h2")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Interfaces[0].Egress; got != "delay 30ms" {
		t.Errorf("h2:eth0 egress %q, want delay 30ms", got)
	}
	if s := r.Interfaces[0].EgressStats; s == nil || s.SentPackets < 8 {
		t.Errorf("h2:eth0 egress counters %+v, want the replies counted", s)
	}
}

// A router's filter rule drops what it names, and counts it.
func TestFilterRules(t *testing.T) {
	testbin.EndToEnd(t)
	path := writeTopology(t, `
name: filtered
topology:
  nodes:
    h1: {interfaces: {eth0: 10.0.1.10/24}, routes: [default via 10.0.1.1]}
    r1:
      kind: router
      interfaces: {eth0: 10.0.1.1/24, eth1: 10.0.2.1/24}
      filter:
        - -A FORWARD -i eth0 -p tcp --dport 6000 -j REJECT
        - -A FORWARD -p udp -j DROP
    h2: {interfaces: {eth0: 10.0.2.10/24}, routes: [default via 10.0.2.1]}
  links:
    - endpoints: [h1:eth0, r1:eth0]
    - endpoints: [r1:eth1, h2:eth0]
`)
	upLab(t, path, "")
	transfer(t, "filtered", "h2", "h1", "10.0.2.10:6001", 1<<20)
	srv := execOn(t, "filtered", "h2", "serve", "10.0.2.10:6000", "100")
	srv.line(t)
	cl := execOn(t, "filtered", "h1", "fetch", "10.0.2.10:6000")
	if err := cl.cmd.Wait(); err == nil || !strings.Contains(cl.stderr.String(), "connection refused") {
		t.Errorf("fetch through a REJECT rule: %v, %s; want connection refused", err, cl.stderr)
	}
	r, err := (&lab.Client{Name: "filtered"}).Node(context.Background(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Filter) != 2 || r.Filter[0].Packets != 1 || r.Filter[1].Packets != 0 {
		t.Errorf("rule counters %+v, want one packet on the first rule", r.Filter)
	}
}

// A nat node is the lab's way out: a host behind a router reaches a
// listener on the machine's loopback through it.
func TestNATNode(t *testing.T) {
	testbin.EndToEnd(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 4 << 20
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, io.LimitReader(rand.NewChaCha8([32]byte{'l', 'a', 'b'}), size))
		c.Close()
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	path := writeTopology(t, `
name: natted
topology:
  nodes:
    h1: {interfaces: {eth0: 10.0.1.10/24}, routes: [default via 10.0.1.1]}
    r1:
      kind: router
      interfaces: {eth0: 10.0.1.1/24, eth1: 10.0.9.1/24}
      routes: [default via 10.0.9.254]
    gw: {kind: nat, interfaces: {eth0: 10.0.9.254/24}, routes: [10.0.1.0/24 via 10.0.9.1]}
  links:
    - endpoints: [h1:eth0, r1:eth0]
    - endpoints: [r1:eth1, gw:eth0]
`)
	upLab(t, path, "")
	cl := execOn(t, "natted", "h1", "fetch", fmt.Sprintf("10.0.2.2:%d", port))
	got := cl.line(t)
	cl.wait(t)
	h := sha256.New()
	io.Copy(h, io.LimitReader(rand.NewChaCha8([32]byte{'l', 'a', 'b'}), size))
	if want := fmt.Sprintf("bytes %d sha256 %x", size, h.Sum(nil)); got != want {
		t.Fatalf("through the nat node: %q, want %q", got, want)
	}
}

// Mistakes in the file are one line naming the file, line and field, and
// exit status 2.
func TestUpUsageErrors(t *testing.T) {
	testbin.EndToEnd(t)
	path := writeTopology(t, `name: bad
topology:
  nodes:
    r1: {kind: router, interfaces: {eth0: 10.0.1.1/24}}
    h1: {interfaces: {eth0: 10.0.1.2/24}}
  links:
    - endpoints: ["h1:eth0", "r1:eth3"]
`)
	_, errOut, code := runUstack(t, "lab", "up", path)
	want := path + `:7: topology.links[0].endpoints[1]: "r1:eth3": node r1 has no interface eth3 (its interfaces: eth0)`
	if code != 2 || strings.TrimSpace(errOut) != "ustack: lab up: "+want {
		t.Errorf("status %d, stderr %q; want 2 and %q", code, errOut, want)
	}
	if files := controlFiles(t); len(files) != 0 {
		t.Errorf("a refused lab left %v", files)
	}
}

// A link's packet-mutator rules act at the end that names them: h2 divides
// the ACKs it sends and drops the pings it receives; the transfer still
// arrives whole, and each rule's counters say what it did.
func TestMutatedLink(t *testing.T) {
	testbin.EndToEnd(t)
	path := writeTopology(t, `
name: mutated
topology:
  nodes:
    h1: {interfaces: {eth0: 10.0.1.10/24}}
    h2: {interfaces: {eth0: 10.0.1.20/24}}
  links:
    - endpoints: [h1:eth0, h2:eth0]
      shape: rate 20mbit delay 5ms
      mutate: {h2:eth0: [ack-division=4, in icmp drop]}
`)
	_, st := upLab(t, path, "")
	if got := st.Links[0].Mutate; len(got[0]) != 0 || strings.Join(got[1], "; ") != "ack-division=4; in icmp drop" {
		t.Errorf("the link's rules in the lab's status: %q", got)
	}
	transfer(t, "mutated", "h1", "h2", "10.0.1.10:7000", 1<<20)

	var out bytes.Buffer
	c := control.Dial(lab.NodeSocketName("mutated", "h1"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.Ping(ctx, api.PingRequest{Host: "10.0.1.20", Count: 3, Interval: 20 * time.Millisecond, Timeout: time.Second, Size: 56}, &out)
	if n != 0 {
		t.Errorf("ping through a rule that drops it: %d replies (%v):\n%s", n, err, out.String())
	}

	cl := &lab.Client{Name: "mutated"}
	h2, err := cl.Node(context.Background(), "h2")
	if err != nil {
		t.Fatal(err)
	}
	m := h2.Interfaces[0].Mutate
	if m == nil || len(m.Rules) != 2 {
		t.Fatalf("h2:eth0's mutator counters: %+v, want two rules", m)
	}
	t.Logf("h2:eth0 mutator: %+v", *m)
	// 1 MiB is about 720 segments: ACKs of new data, each made four (three
	// added), but for those acknowledging too few bytes to split four ways.
	if div := m.Rules[0]; div.Acted < 50 || div.Injected > 3*div.Acted || div.Injected < 2*div.Acted {
		t.Errorf("ack-division's counters %+v, want many ACKs divided in four", div)
	}
	if drop := m.Rules[1]; drop.Matched < 3 {
		t.Errorf("the icmp rule's counters %+v, want the 3 echo requests", drop)
	}
	h1, err := cl.Node(context.Background(), "h1")
	if err != nil {
		t.Fatal(err)
	}
	if h1.Interfaces[0].Mutate != nil {
		t.Errorf("h1:eth0 has mutator counters %+v, and no rules", h1.Interfaces[0].Mutate)
	}
}
