package intercept

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testpeer"
	"github.com/ustack/ustack/internal/testprog"
)

// The test binary doubles as the launch helper, and as the program of
// TestInjectedFDSurvivesSignals.
func TestMain(m *testing.M) {
	if IsHelper() {
		HelperMain()
	}
	testpeer.Dispatch(map[string]testpeer.Mode{"socket-loop": socketLoop, "stat-fds": statFDs, "getsockopt-loop": getsockoptLoop})
	os.Exit(m.Run())
}

func TestExitStatusAndContinue(t *testing.T) {
	var calls atomic.Int32
	p, err := Start(Config{
		Path: "sh", Args: []string{"sh", "-c", "exit 7"},
		Stdout: os.Stdout, Stderr: os.Stderr,
		Handler: HandlerFunc(func(c *Call) { calls.Add(1); c.Continue() }),
		Logf:    t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := p.Wait()
	if st.ExitCode() != 7 {
		t.Fatalf("exit status %d, want 7", st.ExitCode())
	}
}

func TestSocketIsNotified(t *testing.T) {
	py := testprog.Need(t, "python3")
	var sockets, unixSockets atomic.Int32
	p, err := Start(Config{
		Path: py, Args: []string{"python3", "-c", "import socket; socket.socket(); socket.socket(socket.AF_UNIX)"},
		Stdout: os.Stdout, Stderr: os.Stderr,
		Handler: HandlerFunc(func(c *Call) {
			if c.Nr() == unix.SYS_SOCKET {
				sockets.Add(1)
				if c.Arg(0) == unix.AF_UNIX {
					unixSockets.Add(1)
				}
			}
			c.Continue()
		}),
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := p.Wait()
	if st.ExitCode() != 0 {
		t.Fatalf("exit status %d", st.ExitCode())
	}
	if sockets.Load() != 1 || unixSockets.Load() != 0 {
		t.Fatalf("notified sockets: %d (AF_UNIX %d), want 1 AF_INET and no AF_UNIX", sockets.Load(), unixSockets.Load())
	}
}

// socketLoop, the peer mode "socket-loop N", opens and closes N sockets,
// and fails if one of them is not a socket.
func socketLoop(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return fmt.Errorf("socket %d: %w", i, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK || fd < 3 {
			return fmt.Errorf("socket %d: got fd %d, mode %o, fstat error %v: not the injected socket", i, fd, st.Mode, err)
		}
		unix.Close(fd)
	}
	return nil
}

// TestInjectedFDSurvivesSignals: the supervisor's threads are showered
// with signals (Go's own preemption signal) while it injects fds. A signal
// that interrupts the injection at the wrong moment used to make the
// program's socket() return 0, with no fd installed.
func TestInjectedFDSurvivesSignals(t *testing.T) {
	const sockets = 3000
	var injected atomic.Int32
	prog := testpeer.Command("socket-loop", strconv.Itoa(sockets))
	p, err := Start(Config{
		Path: prog.Path, Args: prog.Args, Env: prog.Env,
		Stdout: os.Stdout, Stderr: os.Stderr,
		Handler: HandlerFunc(func(c *Call) {
			if c.Nr() != unix.SYS_SOCKET {
				c.Continue()
				return
			}
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				c.Fail(unix.ENFILE)
				return
			}
			if _, err := c.ReturnFD(fds[1], false); err == nil {
				injected.Add(1)
			}
			unix.Close(fds[0])
			unix.Close(fds[1])
		}),
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tasks, _ := os.ReadDir("/proc/self/task")
			for _, task := range tasks {
				if tid, err := strconv.Atoi(task.Name()); err == nil {
					unix.Tgkill(os.Getpid(), tid, unix.SIGURG)
				}
			}
			time.Sleep(20 * time.Microsecond) // paces the signals: their rate is the test's subject, not a wait
		}
	}()
	st, _ := p.Wait()
	close(stop)
	<-done
	if st.ExitCode() != 0 {
		t.Fatalf("the program saw a socket() that was not its socket (exit %d) after %d injections", st.ExitCode(), injected.Load())
	}
	if injected.Load() != sockets {
		t.Fatalf("%d sockets injected, want %d", injected.Load(), sockets)
	}
}

// statFDs, the peer mode "stat-fds", asks getsockopt(SO_TYPE) about a
// socket, a file and a closed fd number, each from several threads and
// several times, after printing what fstat says of each ("fd ino" lines,
// 0 for the closed one), then "end".
func statFDs([]string) error {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	file, err := unix.Open("/proc/self/exe", unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	closed, err := unix.Dup(file)
	if err != nil {
		return err
	}
	unix.Close(closed)
	for _, fd := range []int{sock, file} {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		fmt.Printf("%d %d\n", fd, st.Ino)
	}
	fmt.Printf("%d 0\n", closed)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 5 {
				for _, fd := range []int{sock, file, closed} {
					unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	fmt.Println("end")
	return nil
}

// TestStatFD: StatFD sees the caller's fd as fstat in the caller does,
// EBADF for a number that is not open, on the first call of a thread (the
// thread's /proc directory opened) and on the next ones (kept open).
func TestStatFD(t *testing.T) {
	type seen struct {
		ino  uint64
		errs string
	}
	var mu sync.Mutex
	got := map[int][]seen{}
	prog := testpeer.Command("stat-fds")
	outFile, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	p, err := Start(Config{
		Path: prog.Path, Args: prog.Args, Env: prog.Env,
		Stdout: outFile, Stderr: os.Stderr,
		Handler: HandlerFunc(func(c *Call) {
			if c.Nr() != unix.SYS_GETSOCKOPT {
				c.Continue()
				return
			}
			st, err := c.StatFD(int(c.Arg(0)))
			var e string
			if err != nil {
				e = err.Error()
			}
			mu.Lock()
			got[int(c.Arg(0))] = append(got[int(c.Arg(0))], seen{st.Ino, e})
			mu.Unlock()
			c.Continue()
		}),
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := p.Wait()
	out, err := os.ReadFile(outFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 0 || !strings.HasSuffix(string(out), "end\n") {
		t.Fatalf("program: exit %d, output %q", st.ExitCode(), out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines[:3] {
		var fd int
		var ino uint64
		if _, err := fmt.Sscan(l, &fd, &ino); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if len(got[fd]) != 20 {
			t.Errorf("fd %d: %d calls seen, want 20", fd, len(got[fd]))
		}
		for _, s := range got[fd] {
			switch {
			case ino == 0 && s.errs != unix.EBADF.Error():
				t.Errorf("fd %d (closed): StatFD said inode %d, error %q; want EBADF", fd, s.ino, s.errs)
			case ino != 0 && (s.errs != "" || s.ino != ino):
				t.Errorf("fd %d: StatFD said inode %d, error %q; fstat in the program said %d", fd, s.ino, s.errs, ino)
			}
		}
	}
}
