package sockets_test

// End-to-end tests: real programs (curl, sh, a static Go program) under
// 'ustack run', talking to servers on the host through the nat attachment
// (10.0.2.2 is the host's loopback) and to each other over the stack's own
// loopback.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

var ustackBin, netprogBin string

func TestMain(m *testing.M) {
	testbin.Run("ustack-sockets-test", raceEnabled, map[string]string{"netprog": "github.com/ustack/ustack/sockets/testdata/netprog"},
		func(ustack string, bins map[string]string) { ustackBin, netprogBin = ustack, bins["netprog"] }, m.Run)
}

// ustackRun runs 'ustack run [flags] -- args' and returns its output and
// exit status.
func ustackRun(t *testing.T, timeout time.Duration, flags []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(ustackBin, append(append(append([]string{"run"}, flags...), "--"), args...)...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
	defer timer.Stop()
	cmd.Wait()
	code = cmd.ProcessState.ExitCode()
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
		t.Fatalf("ustack killed by %v after %v (hung?); stderr: %s", ws.Signal(), timeout, errb.String())
	}
	if strings.Contains(errb.String(), "DATA RACE") {
		t.Errorf("the race detector found a race in ustack:\n%s", errb.String())
	}
	return out.String(), errb.String(), code
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "USTACK_") {
			env = append(env, kv)
		}
	}
	return env
}

// need returns the path of prog, or skips the test, naming the package to
// install, when it is missing or another program of the same name.
func need(t *testing.T, prog string) string {
	t.Helper()
	return testprog.Need(t, prog)
}

// payload matches netprog's.
func payload(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// hostServer serves payload(size) at /file on 127.0.0.1.
func hostServer(t *testing.T, size int) int {
	t.Helper()
	data := payload(size)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

func TestCurlFetch(t *testing.T) {
	curl := need(t, "curl")
	const size = 4 << 20
	port := hostServer(t, size)
	out, errOut, code := ustackRun(t, 30*time.Second, nil, curl, "-sS", fmt.Sprintf("http://10.0.2.2:%d/file", port))
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	if len(out) != size || sum([]byte(out)) != sum(payload(size)) {
		t.Fatalf("got %d bytes (sha256 %s), want %d (%s)", len(out), sum([]byte(out)), size, sum(payload(size)))
	}
}

// TestGoDial: Go's net.Dial is a non-blocking connect waited for with
// edge-triggered epoll, then SO_ERROR, getpeername and getsockname. The
// local address must be the stack's (getsockname is ours), and one Dial
// must be one connection (without getsockname, Go's self-connect check
// redials).
func TestGoDial(t *testing.T) {
	const size = 1 << 20
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Write(payload(size))
			c.Close()
		}
	}()
	tport := l.Addr().(*net.TCPAddr).Port
	out, errOut, code := ustackRun(t, 30*time.Second, nil, netprogBin, "dial", fmt.Sprintf("10.0.2.2:%d", tport))
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	want := fmt.Sprintf("remote 10.0.2.2:%d bytes %d sha256 %s", tport, size, sum(payload(size)))
	if !strings.HasPrefix(out, "local 10.0.2.15:") || !strings.Contains(out, want) {
		t.Fatalf("netprog said %q, want local 10.0.2.15:* and %q", out, want)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("the server saw %d connections for one Dial, want 1", n)
	}
}

// TestInterruptedConnect: a blocking connect that signals keep
// interrupting is made again by the kernel (SA_RESTART), each time as a new
// call. Every connect must return 0, as on Linux, whose socket stays
// "connecting" until a connect call sees the outcome, also when the
// restarted call comes after the connection is up (it once got EISCONN).
// The link's 2 ms each way make every connect span many 100 µs signals.
func TestInterruptedConnect(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	const n = 50
	addr := fmt.Sprintf("10.0.2.2:%d", l.Addr().(*net.TCPAddr).Port)
	out, errOut, code := ustackRun(t, 60*time.Second, []string{"--link", "delay 2ms"}, netprogBin, "interrupted-connects", addr, fmt.Sprint(n))
	if code != 0 || !strings.Contains(out, fmt.Sprint("connected ", n)) {
		t.Fatalf("exit %d, stdout %q, stderr: %s", code, out, errOut)
	}
}

// TestGoServePublished: a Go server listening under ustack run, reached
// from the host through a published port.
func TestGoServePublished(t *testing.T) {
	hostPort := freePort(t)
	const size = 1 << 20
	cmd := exec.Command(ustackBin, "run", "-p", fmt.Sprintf("127.0.0.1:%d:8080", hostPort), "--", netprogBin, "serve", ":8080", "2", strconv.Itoa(size))
	cmd.Env = cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "listening [::]:8080" {
		t.Fatalf("netprog said %q, want %q; stderr: %s", lines.Text(), "listening [::]:8080", errb.String())
	}
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || sum(got) != sum(payload(size)) {
			t.Fatalf("connection %d: %d bytes, err %v", i, len(got), err)
		}
		if !lines.Scan() || !strings.HasPrefix(lines.Text(), "accepted local 10.0.2.15:8080 remote 10.0.2.2:") {
			t.Fatalf("netprog said %q after accepting", lines.Text())
		}
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ustack run: %v; stderr: %s", err, errb.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestLoopbackPair: a server and a client in one 'ustack run' reach each
// other over the stack's loopback, in IPv4 and IPv6 (the server listens
// dual-stack, as Go does on ":port").
func TestLoopbackPair(t *testing.T) {
	sh := need(t, "sh")
	const size = 256 << 10
	script := fmt.Sprintf(`%[1]s serve :9000 3 %[2]d >/dev/null & %[1]s dial 127.0.0.1:9000 && %[1]s dial '[::1]:9000' && %[1]s dial 10.0.2.15:9000; wait`, netprogBin, size)
	out, errOut, code := ustackRun(t, 30*time.Second, nil, sh, "-c", script)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr: %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	wants := []string{
		"local 127.0.0.1:* remote 127.0.0.1:9000",
		"local [::1]:* remote [::1]:9000",
		"local 10.0.2.15:* remote 10.0.2.15:9000",
	}
	if len(lines) != len(wants) {
		t.Fatalf("got %q", out)
	}
	for i, w := range wants {
		pre, post, _ := strings.Cut(w, "*")
		tail := fmt.Sprintf(" bytes %d sha256 %s", size, sum(payload(size)))
		if !strings.HasPrefix(lines[i], pre) || !strings.HasSuffix(lines[i], post+tail) {
			t.Errorf("line %d: %q, want %q%s", i, lines[i], w, tail)
		}
	}
}

func TestCurlLoopbackPython(t *testing.T) {
	sh, curl, py := need(t, "sh"), need(t, "curl"), need(t, "python3")
	dir := t.TempDir()
	data := payload(1 << 20)
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Up to 30 s for python to start listening: a loaded CI machine
	// running other packages' tests at the same time can be that slow.
	script := fmt.Sprintf(`cd %s && %s -m http.server -b 127.0.0.1 8000 >/dev/null 2>&1 & pid=$!
for i in $(seq 300); do %s -sS -o /dev/null http://127.0.0.1:8000/f 2>/dev/null && break; sleep 0.1; done
%s -sS http://127.0.0.1:8000/f; rc=$?; kill $pid; wait $pid; exit $rc`, dir, py, curl, curl)
	out, errOut, code := ustackRun(t, 60*time.Second, nil, sh, "-c", script)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	if sum([]byte(out)) != sum(data) {
		t.Fatalf("got %d bytes, want %d", len(out), len(data))
	}
}

func TestExitStatus(t *testing.T) {
	sh := need(t, "sh")
	if _, errOut, code := ustackRun(t, 10*time.Second, nil, sh, "-c", "exit 7"); code != 7 {
		t.Fatalf("exit %d, want 7; stderr: %s", code, errOut)
	}
	if _, errOut, code := ustackRun(t, 10*time.Second, nil, "/nonexistent/prog"); code != 127 || !strings.Contains(errOut, "/nonexistent/prog") {
		t.Fatalf("missing program: exit %d, stderr %q; want 127 and the name", code, errOut)
	}
}

// TestSignalForwarded: SIGTERM to ustack reaches the program, whose exit
// status ustack returns.
func TestSignalForwarded(t *testing.T) {
	sh := need(t, "sh")
	cmd := exec.Command(ustackBin, "run", "--", sh, "-c", `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	cmd.Env = cleanEnv()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := bufio.NewReader(stdout)
	if line, _ := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("got %q", line)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ustack did not exit after SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 42 {
		t.Fatalf("exit %d, want 42", code)
	}
}

// TestConnectRefused: curl to a closed port fails at once with its
// "Couldn't connect" status.
func TestConnectRefused(t *testing.T) {
	curl := need(t, "curl")
	port := freePort(t)
	start := time.Now()
	_, errOut, code := ustackRun(t, 20*time.Second, nil, curl, "-sS", fmt.Sprintf("http://10.0.2.2:%d/", port))
	if code != 7 {
		t.Fatalf("curl exit %d, want 7; stderr: %s", code, errOut)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

// TestKillMidTransfer: the program dies by SIGKILL while receiving; ustack
// exits with 128+9 without hanging.
func TestKillMidTransfer(t *testing.T) {
	sh, curl := need(t, "sh"), need(t, "curl")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	started := make(chan struct{}, 1)
	var sent atomic.Int64
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 1000000000\r\n\r\n"))
		started <- struct{}{}
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
			time.Sleep(time.Millisecond) // paced: a gigabyte at full speed would only load the machine
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	cmd := exec.Command(ustackBin, "run", "--", sh, "-c", fmt.Sprintf(`echo $$; exec %s -sS -o /dev/null http://10.0.2.2:%d/`, curl, port))
	cmd.Env = cleanEnv()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("pid line %q", line)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the transfer did not start")
	}
	// Mid-transfer: megabytes on their way through the stack to curl.
	testwait.ForNil(t, "the transfer to be under way", func() error {
		if n := sent.Load(); n < 4<<20 {
			return fmt.Errorf("%d bytes sent", n)
		}
		return nil
	})
	syscall.Kill(pid, syscall.SIGKILL)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ustack did not exit after its program was killed")
	}
	if code := cmd.ProcessState.ExitCode(); code != 128+9 {
		t.Fatalf("exit %d, want %d", code, 128+9)
	}
}

// TestMeasure prints the cost of one intercepted call and the rate of
// connect+close on one stack (numbers for BENCHMARKS.md, not a pass/fail
// test).
func TestMeasure(t *testing.T) {
	if os.Getenv("USTACK_MEASURE") == "" {
		t.Skip("set USTACK_MEASURE=1 to measure the interception costs")
	}
	for _, args := range [][]string{{"sockopt", "100000"}, {"connects", "127.0.0.1:0", "2000"}} {
		out, errOut, code := ustackRun(t, 5*time.Minute, nil, append([]string{netprogBin}, args...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		t.Logf("under ustack run: %s", strings.TrimSpace(out))
		direct, _ := exec.Command(netprogBin, args...).Output()
		t.Logf("kernel sockets:   %s", strings.TrimSpace(string(direct)))
	}
}

// TestCongestionControlPerSocket: under ustack run --cc hybla a new
// socket has hybla (the stack's); setsockopt(TCP_CONGESTION, "vegas")
// gives one socket package cc's vegas, which then carries a whole transfer
// (SHA-256 checked); an unknown name fails with ENOENT as on Linux.
func TestCongestionControlPerSocket(t *testing.T) {
	py := need(t, "python3")
	const size = 1 << 20
	port := hostServer(t, size)
	script := fmt.Sprintf(`
import errno, hashlib, socket
def name(s): return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
s = socket.socket()
print(name(s))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"vegas")
s.connect(("10.0.2.2", %d))
s.sendall(b"GET /file HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
print(name(s), hashlib.sha256(data.split(b"\r\n\r\n", 1)[1]).hexdigest())
try:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"nosuch")
    print("nosuch accepted")
except OSError as e:
    print(errno.errorcode[e.errno])
`, port)
	out, errOut, code := ustackRun(t, 60*time.Second, []string{"--cc", "hybla"}, py, "-c", script)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	want := "hybla\nvegas " + sum(payload(size)) + "\nENOENT\n"
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}
