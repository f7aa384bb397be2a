package cli_test

// The attack on the control sockets: another user makes a user's control
// directory before the user does (/tmp/ustack-UID is in /tmp) and serves a
// fake daemon there, or serves a socket in the user's own directory. Every
// client of a control socket must notice before it sends anything, and a
// program must not be handed over.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testbin"
)

// impostorEnv runs the test binary as the attacker's fake daemon.
const impostorEnv = "USTACK_CLI_TEST_IMPOSTOR"

// impostorMain is the attacker's fake daemon: the test binary re-run as
// another user. Mode "squat PATH" makes PATH's directory, open to all, and
// serves PATH; "inherit" serves the bound socket it got as fd 3. It prints
// "ready", then a line for every request and every fd it receives, and
// answers as a daemon would.
func impostorMain(mode string) int {
	fields := strings.Fields(mode)
	var ln net.Listener
	var err error
	switch {
	case len(fields) == 2 && fields[0] == "squat":
		path := fields[1]
		if err = os.Mkdir(filepath.Dir(path), 0o777); err == nil {
			err = os.Chmod(filepath.Dir(path), 0o777)
		}
		if err == nil {
			ln, err = net.Listen("unix", path)
		}
		if err == nil {
			err = os.Chmod(path, 0o666)
		}
	case len(fields) == 1 && fields[0] == "inherit":
		if err = unix.Listen(3, 16); err == nil {
			ln, err = net.FileListener(os.NewFile(3, "socket"))
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 3
	}
	fmt.Println("ready")
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		go impostorServe(c.(*net.UnixConn), say)
	}
}

func impostorServe(c *net.UnixConn, say func(string, ...any)) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	say("request %s %s", req.Method, req.RequestURI)
	if req.Method == http.MethodPost && req.URL.Path == "/v1/attach" {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		oob := make([]byte, unix.CmsgSpace(4*4))
		_, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 1), oob)
		if err != nil {
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			fds, _ := unix.ParseUnixRights(&m)
			for _, fd := range fds {
				link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
				say("received fd %s", link)
				unix.Close(fd)
			}
		}
		io.WriteString(c, "ok\n")
		return
	}
	body := "{}"
	if req.URL.Path == "/v1/info" {
		body = `{"name":"lab","pid":1,"command":"daemon","attachment":"nat","addresses":["10.0.2.15/24"],"socket":"fake"}`
	}
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// impostor is a running fake daemon and what it has printed.
type impostor struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  []string
}

// startImpostor runs the fake daemon as uid in mode; extra becomes fd 3.
func startImpostor(t *testing.T, bin string, uid int, mode string, extra *os.File) *impostor {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(cleanEnv(), impostorEnv+"="+mode)
	cmd.Dir = filepath.Dir(bin)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if extra != nil {
		cmd.ExtraFiles = []*os.File{extra}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	im := &impostor{cmd: cmd, done: make(chan struct{})}
	t.Cleanup(im.stop)
	ready := make(chan string, 1)
	go func() {
		defer close(im.done)
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			if first {
				ready <- sc.Text()
				first = false
				continue
			}
			im.mu.Lock()
			im.out = append(im.out, sc.Text())
			im.mu.Unlock()
		}
		if first {
			ready <- "(no output)"
		}
	}()
	select {
	case line := <-ready:
		if line != "ready" {
			t.Fatalf("the fake daemon did not start: %s", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the fake daemon did not start within 30s")
	}
	return im
}

// stop kills the fake daemon and returns everything it printed.
func (im *impostor) stop() {
	im.cmd.Process.Kill()
	<-im.done
	im.cmd.Wait()
}

func (im *impostor) received() []string {
	im.stop()
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.out
}

// openDir makes a directory every user may enter, with copies of ustack
// and of the test binary that other users may run.
func openDir(t *testing.T) (dir, ustack, testBin string) {
	t.Helper()
	// Not t.TempDir: its parent is closed to other users.
	dir, err := os.MkdirTemp("", "ustack-impostor-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	copyExec := func(src, name string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, name)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	return dir, copyExec(ustackBin, "ustack"), copyExec(os.Args[0], "cli.test")
}

// runAs runs ustack as uid with the default control directory (no
// XDG_RUNTIME_DIR).
func runAs(t *testing.T, uid int, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for _, kv := range cleanEnv() {
		if !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Dir = filepath.Dir(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("ustack %s as uid %d did not finish within a minute", strings.Join(args, " "), uid)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// TestImpostorDaemon: a fake daemon of another user, in the victim's
// squatted control directory or behind a socket in the victim's own
// directory, gets nothing from any client of the victim: every command
// fails with one line naming the path and the fix, sends no request and
// hands over no program, which does not run.
func TestImpostorDaemon(t *testing.T) {
	testbin.EndToEnd(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the victim and the attacker as two other users")
	}
	const attacker = 65534 // nobody
	victim := 64000 + os.Getpid()%1000
	dir, ustack, testBin := openDir(t)
	ctlDir := fmt.Sprintf("/tmp/ustack-%d", victim)
	sock := filepath.Join(ctlDir, "lab.sock")
	if err := os.RemoveAll(ctlDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ctlDir) })

	marker := filepath.Join(dir, "ran")
	commands := [][]string{
		{"ls"},
		{"ss"},
		{"ss", "lab"},
		{"stats", "lab"},
		{"top", "lab"},
		{"trace", "lab", "-o", "-", "--duration", "1s"},
		{"capture", "lab", "-w", "-"},
		{"fetch", "--stack", "lab", "http://10.0.2.2:9/"},
		{"ping", "--stack", "lab", "-c", "1", "10.0.2.2"},
		{"run", "--stack", "lab", "--", "touch", marker},
	}
	attack := func(t *testing.T, im *impostor, want string) {
		for _, args := range commands {
			r := runAs(t, victim, ustack, args...)
			t.Logf("ustack %s: exit %d: %s", strings.Join(args, " "), r.code, strings.TrimSpace(r.stderr))
			if r.code != 1 || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("ustack %s: exit %d, stdout %q, stderr %q; want exit 1 and one line with %q",
					strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
			}
		}
		if got := im.received(); len(got) != 0 {
			t.Errorf("the fake daemon received:\n%s", strings.Join(got, "\n"))
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("the program ran although its stack is an impostor")
		}
	}

	t.Run("squatted directory", func(t *testing.T) {
		im := startImpostor(t, testBin, attacker, "squat "+sock, nil)
		attack(t, im, fmt.Sprintf("control directory %s belongs to uid %d, not you", ctlDir, attacker))
		os.RemoveAll(ctlDir)
	})

	t.Run("socket served by another user", func(t *testing.T) {
		// The victim's own directory and socket file, but the socket was
		// handed to a process of another user, which listens on it.
		if err := os.Mkdir(ctlDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(ctlDir, victim, victim); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(sock, victim, victim); err != nil {
			t.Fatal(err)
		}
		im := startImpostor(t, testBin, attacker, "inherit", f)
		attack(t, im, fmt.Sprintf("is served by uid %d", attacker))
	})
}

// TestRootUsesOnlyRootsStacks: root's 'ustack run --stack' refuses a
// daemon of another user before it launches anything (that daemon would
// answer a root program's socket calls), and such a daemon refuses a
// root program handed to it all the same.
func TestRootUsesOnlyRootsStacks(t *testing.T) {
	testbin.EndToEnd(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a daemon as another user")
	}
	const owner = 65534 // nobody
	dir, ustack, _ := openDir(t)
	runtimeDir := filepath.Join(dir, "runtime")
	if err := os.Mkdir(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(runtimeDir, owner, owner); err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(ustack, "daemon", "--name", "theirs")
	daemon.Env = cleanEnv("XDG_RUNTIME_DIR=" + runtimeDir)
	daemon.Dir = dir
	daemon.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: owner, Gid: owner}}
	var log strings.Builder
	daemon.Stderr = &log
	stdout, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	sock := filepath.Join(runtimeDir, "ustack", "theirs.sock")
	if err != nil || !strings.Contains(line, "ready on "+sock) {
		t.Fatalf("the daemon did not start: %q, %v", line, err)
	}

	marker := filepath.Join(dir, "ran")
	r := runUstack(t, []string{"XDG_RUNTIME_DIR=" + runtimeDir}, "run", "--stack", "theirs", "--", "touch", marker)
	want := fmt.Sprintf("belongs to uid %d, not root: root uses only root's stacks", owner)
	if r.code != 1 || !strings.Contains(oneLine(t, r), want) {
		t.Errorf("root's run --stack on a daemon of uid %d: exit %d, stderr %q; want exit 1 and %q", owner, r.code, r.stderr, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the program ran")
	}

	// Past the client's checks, the daemon refuses by itself.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "POST /v1/attach HTTP/1.1\r\nHost: ustack\r\nContent-Length: 0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	want = fmt.Sprintf("a program of root is not served by a stack of uid %d", owner)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), want) {
		t.Errorf("a root client's POST /v1/attach: %s %q, want 403 and %q", resp.Status, body, want)
	}
}
