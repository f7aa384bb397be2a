// Package programs_test runs real Debian programs under 'ustack run': HTTP
// clients and servers, netcat, socat, dig and getent, redis, nginx, iperf3,
// ssh and a static Go program. Each test skips, saying why, when its program
// is missing (scripts/test.sh installs them all).
//
// The nat attachment is used throughout: 10.0.2.2 is the host's loopback,
// where the tests run their host-side servers; 10.0.2.3 is the stack's DNS;
// -p publishes a port of the stack on the host's loopback.
package programs_test

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

var ustackBin, httpprogBin string

func TestMain(m *testing.M) {
	testbin.Run("ustack-programs-test", raceEnabled, map[string]string{"httpprog": "github.com/ustack/ustack/programs/testdata/httpprog"},
		func(ustack string, bins map[string]string) { ustackBin, httpprogBin = ustack, bins["httpprog"] }, m.Run)
}

// need returns the path of prog, or skips the test, naming the package to
// install, when it is missing or another program of the same name.
func need(t testing.TB, prog string) string {
	t.Helper()
	return testprog.Need(t, prog)
}

func needRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", why)
	}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a process a test started in a process group of its own, so that
// the program ustack runs and everything it forks (nginx's workers, a
// shell's background jobs) go with it. The test's cleanup kills the group.
type proc struct {
	t              testing.TB
	name           string
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	done           chan struct{}
}

// start starts name with args; stdin may be nil.
func start(t testing.TB, stdin io.Reader, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = cleanEnv()
	cmd.Stdin = stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A forked child still holding stdout must not keep Wait waiting.
	cmd.WaitDelay = 5 * time.Second
	p := &proc{t: t, name: filepath.Base(name), cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

// run starts 'ustack run [flags] -- args'.
func run(t testing.TB, flags []string, args ...string) *proc {
	t.Helper()
	all := append(append(append([]string{"run"}, flags...), "--"), args...)
	return start(t, nil, ustackBin, all...)
}

// kill kills the process group and waits for the process.
func (p *proc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// signal sends sig to the process itself (ustack passes SIGINT, SIGTERM
// and SIGHUP on to its program).
func (p *proc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// wait waits up to timeout for the process to exit and returns its exit
// status. A process still running then is killed and the test fails.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		p.t.Fatalf("%s did not exit within %v (hung?); stdout:\n%s\nstderr:\n%s", p.name, timeout, tail(p.stdout.String()), tail(p.stderr.String()))
	}
	if strings.Contains(p.stderr.String(), "DATA RACE") {
		p.t.Errorf("the race detector found a race in %s:\n%s", p.name, p.stderr.String())
	}
	code := p.cmd.ProcessState.ExitCode()
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	return code
}

// mustSucceed waits for the process and fails the test unless it exits 0.
func (p *proc) mustSucceed(timeout time.Duration) {
	p.t.Helper()
	if code := p.wait(timeout); code != 0 {
		p.t.Fatalf("%s exited %d; stdout:\n%s\nstderr:\n%s", p.name, code, tail(p.stdout.String()), tail(p.stderr.String()))
	}
}

// waitOutput waits until the process's stdout or stderr contains s.
func (p *proc) waitOutput(s string) {
	p.t.Helper()
	testwait.ForNil(p.t, fmt.Sprintf("%s to say %q", p.name, s), func() error {
		if strings.Contains(p.stdout.String(), s) || strings.Contains(p.stderr.String(), s) {
			return nil
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before saying %q; stdout:\n%s\nstderr:\n%s", p.name, p.cmd.ProcessState, s, tail(p.stdout.String()), tail(p.stderr.String()))
		default:
		}
		return fmt.Errorf("stdout:\n%s\nstderr:\n%s", tail(p.stdout.String()), tail(p.stderr.String()))
	})
}

// tail keeps error messages readable when a program printed a lot.
func tail(s string) string {
	const max = 4000
	if len(s) > max {
		return "..." + s[len(s)-max:]
	}
	return s
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

// randomData returns size bytes that do not compress or repeat.
func randomData(size int) []byte {
	var seed [32]byte
	crand.Read(seed[:])
	r := rand.NewChaCha8(seed)
	b := make([]byte, size)
	r.Read(b)
	return b
}

// writeRandomFile writes size random bytes to path and returns their SHA-256.
func writeRandomFile(t testing.TB, path string, size int) string {
	t.Helper()
	data := randomData(size)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return sum(data)
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// fileSum returns the SHA-256 and size of a file.
func fileSum(t testing.TB, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the program's output: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), n
}

// checkFile fails the test unless the file at path holds exactly the bytes
// whose SHA-256 is want.
func checkFile(t testing.TB, path, want string, size int) {
	t.Helper()
	got, n := fileSum(t, path)
	if got != want || n != int64(size) {
		t.Fatalf("%s: %d bytes, sha256 %s; want %d bytes, sha256 %s", filepath.Base(path), n, got, size, want)
	}
}

// freePort returns a TCP port free on the host's loopback.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hostHTTP serves data at every path on the host's loopback and returns the
// port; the programs reach it as 10.0.2.2:port.
func hostHTTP(t testing.TB, data []byte) int {
	t.Helper()
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

// getUntilUp GETs url from the host until it answers 200 (a server under
// 'ustack run' may still be starting; until it listens, the published port
// refuses) and returns the body.
func getUntilUp(t testing.TB, p *proc, url string) []byte {
	t.Helper()
	var body []byte
	testwait.ForNil(t, url+" to answer", func() error {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) while the test waited for %s; stderr:\n%s", p.name, p.cmd.ProcessState, url, tail(p.stderr.String()))
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s, %d bytes", resp.Status, len(body))
			}
		}
		if err != nil {
			return fmt.Errorf("%v; stderr of %s:\n%s", err, p.name, tail(p.stderr.String()))
		}
		return nil
	})
	return body
}

// exchangeUntilUp connects from the host to addr and runs one exchange,
// retrying while the connection ends without a byte (the program under
// 'ustack run' does not listen yet: the published port's connection is
// refused on the stack). It returns what it read.
func exchangeUntilUp(t testing.TB, p *proc, addr string, ex func(net.Conn) ([]byte, error)) []byte {
	t.Helper()
	var got []byte
	testwait.ForNil(t, "an exchange with "+addr, func() error {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before the exchange; stderr:\n%s", p.name, p.cmd.ProcessState, tail(p.stderr.String()))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		got, err = ex(c)
		c.Close()
		if len(got) > 0 {
			if err != nil {
				t.Fatalf("%s: after %d bytes: %v", addr, len(got), err)
			}
			return nil
		}
		return fmt.Errorf("nothing came back (%v); stderr of %s:\n%s", err, p.name, tail(p.stderr.String()))
	})
	return got
}

// sendAndReceive sends send, then a FIN, while reading until EOF.
func sendAndReceive(send []byte) func(net.Conn) ([]byte, error) {
	return func(c net.Conn) ([]byte, error) {
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(send)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			werr <- err
		}()
		got, err := io.ReadAll(c)
		if err2 := <-werr; err == nil && len(got) > 0 {
			err = err2
		}
		return got, err
	}
}

// receiveThenSend reads until EOF, then sends send and closes: the order
// for a peer such as nc that exits as soon as its network input ends.
func receiveThenSend(send []byte) func(net.Conn) ([]byte, error) {
	return func(c net.Conn) ([]byte, error) {
		got, err := io.ReadAll(c)
		if err != nil || len(got) == 0 {
			return got, err
		}
		if _, err := c.Write(send); err != nil {
			return got, err
		}
		return got, c.(*net.TCPConn).CloseWrite()
	}
}

// hostSink accepts connections on the host's loopback one at a time; for
// each it reads everything the peer sends until its FIN, reports the
// SHA-256 and length of it on the returned channel, then sends reply and
// closes.
func hostSink(t testing.TB, reply []byte) (port int, got <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil {
				ch <- fmt.Sprintf("error after %d bytes: %v", n, err)
				c.Close()
				continue
			}
			ch <- fmt.Sprintf("%d bytes sha256 %x", n, h.Sum(nil))
			c.Write(reply)
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, ch
}

// receive waits for one report of hostSink.
func receive(t testing.TB, ch <-chan string, timeout time.Duration) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(timeout):
		t.Fatalf("the host side received no connection within %v", timeout)
		return ""
	}
}

func sumLine(data []byte) string { return fmt.Sprintf("%d bytes sha256 %s", len(data), sum(data)) }

// lines returns the non-empty lines of s; carriage returns (progress
// output) split lines too.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(s, "\r", "\n")))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
