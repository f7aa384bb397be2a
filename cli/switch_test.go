package cli_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/vswitch"
)

// syncBuffer is a buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bgProc is a process of the test's that runs in the background and
// announces itself with a line on stdout.
type bgProc struct {
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{}
}

// startBackground starts ustack with args and waits up to 20 s for a line
// of stdout that matches ready, whose submatches it returns. The process
// is killed at the end of the test.
func startBackground(t *testing.T, env []string, ready *regexp.Regexp, args ...string) (*bgProc, []string) {
	t.Helper()
	p := &bgProc{cmd: exec.Command(ustackBin, args...), done: make(chan struct{})}
	p.cmd.Env = cleanEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	var m []string
	testwait.ForNil(t, "ustack "+strings.Join(args, " ")+" to say it is ready", func() error {
		if m = ready.FindStringSubmatch(p.stdout.String()); m != nil {
			return nil
		}
		select {
		case <-p.done:
			t.Fatalf("ustack %s exited before it was ready; stderr %q", strings.Join(args, " "), p.stderr.String())
		default:
		}
		return fmt.Errorf("stdout %q, stderr %q", p.stdout.String(), p.stderr.String())
	})
	return p, m
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *bgProc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func startSwitch(t *testing.T, env []string, name string) (*bgProc, string) {
	t.Helper()
	p, m := startBackground(t, env, regexp.MustCompile(`(?m)^ustack switch `+name+`: ready on (\S+) \(MTU 1500\)$`), "switch", name)
	return p, m[1]
}

func switchStatus(t *testing.T, env []string, name string) vswitch.Status {
	t.Helper()
	r := runUstack(t, env, "switch", name, "status", "--json")
	var st vswitch.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil {
		t.Fatalf("switch status: exit %d, %v; stderr %q", r.code, err, r.stderr)
	}
	return st
}

func portNamed(st vswitch.Status, label string) (vswitch.PortStatus, bool) {
	for _, p := range st.Ports {
		if p.Label == label {
			return p, true
		}
	}
	return vswitch.PortStatus{}, false
}

// sha256Server runs a python3 server on the daemon's stack that answers
// one connection on port 5000 with the SHA-256 (hex) of what it read.
func sha256Server(t *testing.T, env []string, daemon string) {
	t.Helper()
	script := `import socket, hashlib
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5000))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
h = hashlib.sha256()
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b)
c.sendall(h.hexdigest().encode())
c.close()
`
	startBackground(t, env, regexp.MustCompile(`listening`), "run", "--stack", daemon, "--", "python3", "-c", script)
}

// sendThrough opens a TCP connection from the daemon's stack (CONNECT on
// its control socket) to target, sends size random bytes, half-closes and
// returns the SHA-256 of what it sent and the answer.
func sendThrough(t *testing.T, sock, target string, size int64) (sent [32]byte, answer string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.NewChaCha8([32]byte{7}), size)); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil)), string(b)
}

// TestSwitch: three daemons in three processes on one switch reach each
// other, 64 MiB cross from one to another intact without being flooded to
// the third, a daemon killed with SIGKILL frees its port at once, and a
// switch killed with SIGKILL leaves a name the next switch takes over and
// gives up without a file left behind.
func TestSwitch(t *testing.T) {
	testbin.EndToEnd(t)
	testprog.Need(t, "python3")
	runtimeDir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	sw, sock := startSwitch(t, env, "lan")
	if want := filepath.Join(runtimeDir, "ustack", "switch", "lan.sock"); sock != want {
		t.Errorf("switch socket %s, want %s", sock, want)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("switch socket: %v, mode %v", err, fi.Mode())
	}
	daemons := map[string]*daemonProc{}
	addrs := map[string]string{"a": "10.9.0.1", "b": "10.9.0.2", "c": "10.9.0.3"}
	for _, name := range []string{"a", "b", "c"} {
		daemons[name] = startDaemon(t, runtimeDir, name, "--net", "switch:lan", "--ip", addrs[name]+"/24")
	}
	for from := range addrs {
		for to, addr := range addrs {
			if from == to {
				continue
			}
			if r := runUstack(t, env, "ping", "--stack", from, "-c", "1", "-W", "10", addr); r.code != 0 {
				t.Fatalf("ping from %s to %s: exit %d: %s %s", from, to, r.code, r.stdout, r.stderr)
			}
		}
	}

	r := runUstack(t, env, "switch", "lan", "status")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 5 || !regexp.MustCompile(`^switch lan: pid \d+, MTU 1500, aging 300s, 3 ports, 3 addresses learned, \d+ frames flooded$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^PORT +STACK +PID +COMMAND +MACS +IN-FRAMES +IN-BYTES +IN-DROPPED +OUT-FRAMES +OUT-BYTES +OUT-DROPPED +QUEUED$`).MatchString(lines[1]) {
		t.Fatalf("switch status: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i, name := range []string{"a", "b", "c"} {
		pat := fmt.Sprintf(`^%d +%s +%d +ustack +([0-9a-f]{2}:){5}[0-9a-f]{2} +\d+ +\d+ +0 +\d+ +\d+ +0 +\d+$`, i+1, name, daemons[name].cmd.Process.Pid)
		if !regexp.MustCompile(pat).MatchString(lines[2+i]) {
			t.Errorf("status line of %s: %q, want %s", name, lines[2+i], pat)
		}
	}

	// 64 MiB from a to b: c's port sees none of it.
	sha256Server(t, env, "b")
	before, _ := portNamed(switchStatus(t, env, "lan"), "c")
	const size = 64 << 20
	sent, answer := sendThrough(t, daemons["a"].sock, "10.9.0.2:5000", size)
	if answer != hex.EncodeToString(sent[:]) {
		t.Fatalf("b's SHA-256 of what it received is %q, want %x", answer, sent)
	}
	st := switchStatus(t, env, "lan")
	pa, _ := portNamed(st, "a")
	pc, _ := portNamed(st, "c")
	if pa.InBytes < size {
		t.Errorf("a's port took in %d bytes, less than the %d sent", pa.InBytes, size)
	}
	if grew := pc.OutFrames - before.OutFrames; grew > 10 {
		t.Errorf("c's port was sent %d frames during the transfer between a and b: learned unicast was flooded", grew)
	}

	// kill -9 of c: its port goes, with its address.
	daemons["c"].cmd.Process.Signal(syscall.SIGKILL)
	err := <-daemons["c"].done
	daemons["c"].done <- err // for startDaemon's cleanup
	testwait.For(t, "c's port to go after c was killed", func() bool {
		st = switchStatus(t, env, "lan")
		_, ok := portNamed(st, "c")
		return !ok
	})
	if len(st.Ports) != 2 || st.Learned != 2 {
		t.Errorf("after c was killed: %+v", st)
	}

	// kill -9 of the switch: the name is free for the next one.
	sw.kill9()
	if r := runUstack(t, env, "switch", "lan", "status"); r.code != 1 || !strings.Contains(oneLine(t, r), "no switch named lan is running") {
		t.Errorf("status of a killed switch: exit %d, %q", r.code, r.stderr)
	}
	next, _ := startSwitch(t, env, "lan")
	if r := runUstack(t, env, "switch", "lan"); r.code != 2 || !strings.Contains(oneLine(t, r), "a switch named lan is already running") {
		t.Errorf("a second switch lan: exit %d, %q", r.code, r.stderr)
	}
	next.cmd.Process.Signal(syscall.SIGTERM)
	<-next.done
	if !strings.Contains(next.stdout.String(), "ustack switch lan: stopped") {
		t.Errorf("stopped switch said %q, %q", next.stdout.String(), next.stderr.String())
	}
	entries, _ := os.ReadDir(filepath.Join(runtimeDir, "ustack", "switch"))
	if len(entries) != 0 {
		t.Errorf("files left after the switch stopped: %v", entries)
	}
}

// TestSwitchErrors: mistakes in attaching to a switch or running one are
// one line naming the flag and the fix.
func TestSwitchErrors(t *testing.T) {
	testbin.EndToEnd(t)
	runtimeDir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	startSwitch(t, env, "lan")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"daemon", "--name", "x", "--net", "switch:none", "--ip", "10.9.0.9/24"}, 2, "ustack: --net: switch:none: no switch named none is running on "},
		{[]string{"daemon", "--name", "x", "--net", "switch:lan"}, 2, "ustack: --ip: --net switch needs the stack's own address"},
		{[]string{"daemon", "--name", "x", "--net", "switch:lan", "--ip", "10.9.0.9/24", "--mtu", "9000"}, 2, "ustack: --mtu: 9000 is larger than switch lan carries (1500)"},
		{[]string{"daemon", "--name", "x", "--net", "switch:"}, 2, `ustack: --net: "switch:": want switch:NAME`},
		{[]string{"switch"}, 2, "ustack: switch: missing NAME"},
		{[]string{"switch", "lan", "status", "--mtu", "9000"}, 2, "ustack: --mtu: is for starting a switch"},
		{[]string{"switch", "lan", "frob"}, 2, `ustack: switch: unexpected argument "frob"`},
		{[]string{"switch", "--mtu", "100", "x"}, 2, "ustack: --mtu: 100 is out of range"},
	} {
		r := runUstack(t, env, tc.args...)
		if line := oneLine(t, r); r.code != tc.code || !strings.HasPrefix(line, tc.want) {
			t.Errorf("ustack %s: exit %d, %q; want %d, %q", strings.Join(tc.args, " "), r.code, line, tc.code, tc.want)
		}
	}
}
