package sockets_test

// Robustness of a daemon serving many programs (ustack run --stack): what
// programs killed mid-transfer or mid-accept, or exiting with a call held,
// leave behind; many threads blocked at once.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testwait"
)

type daemon struct {
	name, env string
	pid       int
	client    *http.Client
}

// startDaemon runs 'ustack daemon --name NAME' in a runtime directory of
// the test's own.
func startDaemon(t testing.TB, name string) *daemon {
	t.Helper()
	d, _ := startDaemonIn(t, t.TempDir(), name)
	return d
}

// startDaemonIn is startDaemon with the runtime directory given, and more
// flags of ustack daemon if any; it also returns the daemon's command (the
// test's cleanup stops it).
func startDaemonIn(t testing.TB, dir, name string, flags ...string) (*daemon, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(ustackBin, append([]string{"daemon", "--name", name}, flags...)...)
	cmd.Env = append(cleanEnv(), "XDG_RUNTIME_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case ready <- sc.Text():
			default:
			}
		}
	}()
	var sock string
	select {
	case line := <-ready:
		m := regexp.MustCompile(`ready on (\S+) `).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("daemon said %q", line)
		}
		sock = m[1]
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon not ready after 20 s: %s", stderr.String())
	}
	return &daemon{name: name, env: "XDG_RUNTIME_DIR=" + dir, pid: cmd.Process.Pid, client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}}, cmd
}

type counts struct {
	Goroutines int    `json:"goroutines"`
	FDs        int    `json:"fds"`
	Endpoints  int    `json:"endpoints"`
	Sockets    int    `json:"sockets"`
	Attached   int    `json:"attached"`
	HeapBytes  uint64 `json:"heap_bytes"`
}

func (d *daemon) counts(t testing.TB) counts {
	t.Helper()
	resp, err := d.client.Get("http://daemon/v1/runtime?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c counts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// settle waits until the daemon holds no more than base (heap aside).
func (d *daemon) settle(t testing.TB, base counts) counts {
	t.Helper()
	var c counts
	testwait.ForNil(t, "the daemon to hold no more than before", func() error {
		c = d.counts(t)
		if c.Goroutines <= base.Goroutines && c.FDs <= base.FDs && c.Endpoints <= base.Endpoints &&
			c.Sockets <= base.Sockets && c.Attached <= base.Attached {
			return nil
		}
		return fmt.Errorf("now %+v, before %+v", c, base)
	})
	return c
}

// quiet waits until the daemon has no socket, netstack endpoint or program
// left, and returns what it then holds: the counts to come back to.
func (d *daemon) quiet(t testing.TB) counts {
	t.Helper()
	var c counts
	testwait.ForNil(t, "the daemon to hold no socket, endpoint or program", func() error {
		c = d.counts(t)
		if c.Endpoints == 0 && c.Sockets == 0 && c.Attached == 0 {
			return nil
		}
		return fmt.Errorf("now %+v", c)
	})
	return c
}

// startAttached starts netprog under 'ustack run --stack', and returns the
// command and the pid netprog printed. It may run outside the test's
// goroutine, so it reports trouble as an error.
func (d *daemon) startAttached(args ...string) (*exec.Cmd, int, error) {
	cmd := exec.Command(ustackBin, append([]string{"run", "--stack", d.name, "--", netprogBin}, args...)...)
	cmd.Env = append(cleanEnv(), d.env)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, 0, err
	}
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	var pid int
	line, _ := bufio.NewReader(out).ReadString('\n')
	if _, err := fmt.Sscanf(line, "pid %d", &pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, 0, fmt.Errorf("netprog %v said %q; stderr: %s", args, line, stderr.String())
	}
	return cmd, pid, nil
}

// streamServer writes to every connection until it goes away.
func streamServer(t *testing.T) int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// Paced, so that many transfers at once leave the machine
				// free to start and kill programs.
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
					time.Sleep(time.Millisecond) // paces the writes; not a wait
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestKilledProgramsLeaveNothing: programs attached to a daemon are
// killed with SIGKILL mid-transfer and mid-accept, many times over; the
// daemon's fds, goroutines, netstack endpoints and sockets come back to
// what they were, and its heap stays flat.
func TestKilledProgramsLeaveNothing(t *testing.T) {
	iterations := 1000
	if raceEnabled || testing.Short() {
		iterations = 100
	}
	d := startDaemon(t, "robust")
	port := streamServer(t)
	kill := func(mode string) {
		args := []string{"accepting"}
		if mode == "stream" {
			args = []string{"stream", fmt.Sprintf("10.0.2.2:%d", port)}
		}
		cmd, pid, err := d.startAttached(args...)
		if err != nil {
			// Once a program's socket() returned 0 (its stdin) when a
			// signal interrupted the daemon's fd injection; bind then
			// failed with ENOTSOCK.
			t.Errorf("a program failed to start: %v", err)
			return
		}
		// Into the transfer, or the accept.
		if mode == "stream" {
			err = testwait.Until(t.Context(), "the program to receive", func() error { return readAtLeast(pid, 256<<10) })
		} else {
			err = testwait.Until(t.Context(), "the program to block in accept", func() error { return inSyscall(pid, unix.SYS_ACCEPT4) })
		}
		if err != nil {
			t.Error(err)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGKILL) {
			t.Errorf("ustack run --stack after SIGKILL of the program: exit %d, want %d", code, 128+int(syscall.SIGKILL))
		}
	}
	kill("stream")
	kill("accepting")
	base := d.settle(t, d.counts(t))
	var wg sync.WaitGroup
	work := make(chan string)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for mode := range work {
				kill(mode)
			}
		}()
	}
	var half counts
	for i := 0; i < iterations; i++ {
		if i == iterations/2 {
			close(work)
			wg.Wait()
			half = d.settle(t, base)
			work = make(chan string)
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for mode := range work {
						kill(mode)
					}
				}()
			}
		}
		work <- map[bool]string{true: "stream", false: "accepting"}[i%2 == 0]
	}
	close(work)
	wg.Wait()
	after := d.settle(t, base)
	t.Logf("%d programs killed; before %+v, half way %+v, after %+v", iterations, base, half, after)
	// Flat: the second half of the programs adds no more than noise (the
	// first may fill caches and pools). The heap in use after one GC moves
	// by a few MiB between runs either way (netstack's buffer pools, a
	// connection still closing); 8 MiB over 500 programs would be 16 KiB
	// kept per program, a leak this catches.
	if grown := int64(after.HeapBytes) - int64(half.HeapBytes); grown > 8<<20 {
		t.Errorf("the daemon's heap grew by %d KiB over the last %d programs", grown>>10, iterations-iterations/2)
	}
}

// TestExitWithCallHeld: a program exits while one of its threads is
// parked in accept; the daemon lets go of the call and of everything else.
func TestExitWithCallHeld(t *testing.T) {
	d := startDaemon(t, "held")
	// The daemon starts its warden (a process, its link and the goroutine
	// that waits for it) with the first program it serves and keeps it
	// while it lives: the counts to return to are those after one program.
	var base counts
	for i := 0; i < 6; i++ {
		if i == 1 {
			base = d.settle(t, d.counts(t))
		}
		cmd := exec.Command(ustackBin, "run", "--stack", d.name, "--", netprogBin, "exit-accepting")
		cmd.Env = append(cleanEnv(), d.env)
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("netprog exit-accepting: %v", err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("a program exiting with a call held did not finish within 20 s")
		}
	}
	d.settle(t, base)
}

// TestManyBlockedThreads: 50 threads each in accept, recvfrom and
// connect, blocked in the kernel at once, all complete. The connects go to
// a host listener that accepts only once the program says all are waiting,
// so they are held in the nat gateway until then.
func TestManyBlockedThreads(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 1); err != nil { // a full queue drops further SYNs
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := sa.(*unix.SockaddrInet4).Port
	cmd := exec.Command(ustackBin, "run", "--", netprogBin, "blocked", fmt.Sprintf("10.0.2.2:%d", port), "50")
	cmd.Env = cleanEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(90*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "waiting" {
		cmd.Wait()
		t.Fatalf("netprog blocked said %q; stderr: %s", sc.Text(), stderr.String())
	}
	go func() {
		for {
			c, _, err := unix.Accept(fd)
			if err != nil {
				return
			}
			defer unix.Close(c)
		}
	}()
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := cmd.Wait(); err != nil || len(lines) == 0 || lines[len(lines)-1] != "blocked ok" {
		t.Fatalf("netprog blocked: %v, said %q; stderr: %s", err, lines, stderr.String())
	}
}

// readAtLeast is nil once process pid has read n bytes (rchar of
// /proc/PID/io: what its read calls returned, sockets included).
func readAtLeast(pid int, n int64) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return err
	}
	var rchar int64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			rchar, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if rchar < n {
		return fmt.Errorf("%d bytes read", rchar)
	}
	return nil
}

// inSyscall is nil once a thread of process pid is in system call nr
// (/proc/PID/task/TID/syscall begins with the number of the call a
// blocked thread is in).
func inSyscall(pid, nr int) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	var in []string
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
		if err != nil {
			continue // the thread is gone
		}
		f := strings.Fields(string(b))
		if len(f) > 0 && f[0] == strconv.Itoa(nr) {
			return nil
		}
		if len(f) > 0 {
			in = append(in, f[0])
		}
	}
	return fmt.Errorf("the threads of %d are in %v, none in system call %d", pid, in, nr)
}

// TestClosedListenersLeaveNothing: a program closes listeners while
// connections to them wait to be accepted, many times; once it has exited
// the daemon's goroutines (one accept loop per listener), fds, endpoints
// and sockets are back to what they were.
func TestClosedListenersLeaveNothing(t *testing.T) {
	d := startDaemon(t, "listeners")
	runProg := func(n int) {
		t.Helper()
		cmd := exec.Command(ustackBin, "run", "--stack", d.name, "--", netprogBin, "pending-listeners", strconv.Itoa(n))
		cmd.Env = append(cleanEnv(), d.env)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprint("closed ", n)) {
			t.Fatalf("netprog pending-listeners %d: %v\n%s", n, err, out)
		}
	}
	// The first program starts the daemon's warden, which stays. Its
	// connections were reset, as Linux resets a closed listener's queue:
	// no endpoint is left, not even in TIME-WAIT.
	runProg(1)
	base := d.quiet(t)
	runProg(200)
	after := d.settle(t, base)
	t.Logf("200 listeners closed with connections pending; before %+v, after %+v", base, after)
	// And programs killed holding such a listener.
	for i := 0; i < 50; i++ {
		cmd, pid, err := d.startAttached("pending")
		if err != nil {
			t.Fatal(err)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()
	}
	after = d.settle(t, base)
	t.Logf("50 programs killed with connections pending; after %+v", after)
}
