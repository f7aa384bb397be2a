package cli_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testbin"
)

// cpuTicks is the user and system time pid has used, in clock ticks.
func cpuTicks(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return utime + stime, nil
}

// waitGone waits for pid to exit, by its pidfd, and says how much CPU it
// used meanwhile if it did not.
func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.ESRCH {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(fd)
	before, _ := cpuTicks(pid)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(within.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if n == 1 {
			return
		}
		after, _ := cpuTicks(pid)
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		t.Fatalf("pid %d still runs %v after its daemon went away, and used %.2fs of CPU meanwhile",
			pid, within, float64(after-before)/100) // USER_HZ is 100
	}
}

// TestRunAttachedDaemonExits: when the daemon serving a program goes away,
// killed or stopped, the program ends instead of spinning on its dead
// sockets (a server's poll says readable, accept fails, forever): a
// program 'ustack run --stack' still waits for is ended by it, with one
// line saying why and exit status 1; a program left running after
// 'ustack run' returned is ended at its next socket call.
func TestRunAttachedDaemonExits(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed (scripts/test.sh installs it)")
	}
	for _, tc := range []struct {
		name     string
		sig      syscall.Signal
		detached bool
	}{
		{"killed, program in front", syscall.SIGKILL, false},
		{"stopped, program in front", syscall.SIGTERM, false},
		{"killed, program detached", syscall.SIGKILL, true},
		{"stopped, program detached", syscall.SIGTERM, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtimeDir := t.TempDir()
			name := "gone"
			d := startDaemon(t, runtimeDir, name)
			env := cleanEnv("XDG_RUNTIME_DIR=" + runtimeDir)
			// The server prints its pid once it listens, then waits in
			// poll and accept.
			server := `import os, socket, sys, selectors
s = socket.socket(); s.bind(("0.0.0.0", 8126)); s.listen()
print(os.getpid(), flush=True)
sel = selectors.DefaultSelector(); sel.register(s, selectors.EVENT_READ)
while True:
    for _ in sel.select():
        try:
            s.accept()[0].close()
        except OSError:
            pass
`
			var args []string
			if tc.detached {
				args = []string{"run", "--stack", name, "--", "sh", "-c", `python3 -c "$0" </dev/null 2>/dev/null &`, server}
			} else {
				args = []string{"run", "--stack", name, "--", "python3", "-c", server}
			}
			run := exec.Command(ustackBin, args...)
			run.Env = env
			var stderr strings.Builder
			run.Stderr = &stderr
			stdout, err := run.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			// Read before Wait, which closes the pipe.
			line, err := bufio.NewReader(stdout).ReadString('\n')
			var runErr error
			runDone := make(chan struct{})
			go func() { runErr = run.Wait(); close(runDone) }()
			t.Cleanup(func() { run.Process.Kill(); <-runDone })
			pid, convErr := strconv.Atoi(strings.TrimSpace(line))
			if err != nil || convErr != nil {
				run.Process.Kill()
				<-runDone
				t.Fatalf("the server did not start: %q, %v; ustack run: %s", line, err, stderr.String())
			}
			if tc.detached {
				// ustack run returns; the daemon goes on serving the server.
				select {
				case <-runDone:
					if runErr != nil {
						t.Fatalf("ustack run: %v: %s", runErr, stderr.String())
					}
				case <-time.After(30 * time.Second):
					t.Fatal("ustack run did not return after its program went to the background")
				}
			}
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })

			d.cmd.Process.Signal(tc.sig)
			select {
			case err := <-d.done:
				d.done <- err // for startDaemon's cleanup
			case <-time.After(30 * time.Second):
				t.Fatal("the daemon did not exit")
			}
			waitGone(t, pid, 20*time.Second)
			if tc.detached {
				// The daemon's warden killed it and said so in the daemon's
				// log (complete: the daemon's Wait read it to its end, which
				// the warden, holding it, closed when it exited).
				want := fmt.Sprintf("ustack daemon %s: the stack is gone: killed pid %d (python3) at its socket call", name, pid)
				if !strings.Contains(d.stderr.String(), want) {
					t.Errorf("the daemon's log %q does not say %q", d.stderr.String(), want)
				}
				return
			}
			select {
			case <-runDone:
				err := runErr
				var ee *exec.ExitError
				want := fmt.Sprintf("ustack: run: the daemon %s serving the program exited", name)
				if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
					t.Errorf("ustack run: %v, stderr %q; want exit status 1 and one line starting %q", err, stderr.String(), want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("ustack run did not return after its program ended")
			}
		})
	}
}

// TestRunExitsLeaveNoSpinner: a plain 'ustack run' is the stack itself;
// when it is killed while its program runs, or returns while something
// the program forked runs on in the background, that program's network is
// gone with it. Its warden ends it at its next socket call, instead of
// leaving it to spin on calls that fail (poll says readable, accept fails
// with ENOSYS, forever).
func TestRunExitsLeaveNoSpinner(t *testing.T) {
	testbin.EndToEnd(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed (scripts/test.sh installs it)")
	}
	// The server prints its pid once it listens, then waits in poll and
	// accept.
	const server = `import os, socket, sys, selectors
s = socket.socket(); s.bind(("0.0.0.0", 8127)); s.listen()
print(os.getpid(), flush=True)
sel = selectors.DefaultSelector(); sel.register(s, selectors.EVENT_READ)
while True:
    for _ in sel.select():
        try:
            s.accept()[0].close()
        except OSError:
            pass
`
	for _, detached := range []bool{false, true} {
		name := "killed, program in front"
		args := []string{"run", "--", "python3", "-c", server}
		if detached {
			name = "returned, program in the background"
			// sh waits for its stdin to close, so that the server is
			// listening before ustack run returns.
			args = []string{"run", "--", "sh", "-c", `python3 -c "$0" </dev/null 2>/dev/null & read x; exit 0`, server}
		}
		t.Run(name, func(t *testing.T) {
			run := exec.Command(ustackBin, args...)
			run.Env = cleanEnv("XDG_RUNTIME_DIR=" + t.TempDir())
			// The server holds ustack run's stdout; Wait must not wait for
			// it when it outlives ustack run.
			run.WaitDelay = 5 * time.Second
			var stderr strings.Builder
			run.Stderr = &stderr
			stdout, err := run.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdin, err := run.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			var runErr error
			runDone := make(chan struct{})
			go func() { runErr = run.Wait(); close(runDone) }()
			t.Cleanup(func() { run.Process.Kill(); <-runDone })
			pid, convErr := strconv.Atoi(strings.TrimSpace(line))
			if err != nil || convErr != nil {
				run.Process.Kill()
				<-runDone
				t.Fatalf("the server did not start: %q, %v; ustack run: %s", line, err, stderr.String())
			}
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			if detached {
				stdin.Close() // sh returns, the server runs on
				select {
				case <-runDone:
					if runErr != nil {
						t.Fatalf("ustack run: %v: %s", runErr, stderr.String())
					}
				case <-time.After(30 * time.Second):
					t.Fatal("ustack run did not return after its program went to the background")
				}
			} else {
				run.Process.Signal(syscall.SIGKILL)
				<-runDone
			}
			// Nothing connects to the server: its poll wakes because the
			// stack's end of its socket closed, and its accept is the call
			// the warden ends it at.
			waitGone(t, pid, 20*time.Second)
			if detached {
				<-runDone // the warden's log line is complete once ustack run's stderr is
				want := fmt.Sprintf("ustack run: the stack is gone: killed pid %d (python3) at its socket call", pid)
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("ustack run's stderr %q does not say %q", stderr.String(), want)
				}
			}
		})
	}
}
