package realtime

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testprog"
)

func policyOf(t *testing.T, tid int) uint32 {
	t.Helper()
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return a.Policy
}

// TestRaiseReachesNewThreads: after Raise, every thread of the process is
// SCHED_FIFO, also one the runtime makes afterwards; after the test, every
// thread is back to SCHED_NORMAL.
func TestRaiseReachesNewThreads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_NICE) to use SCHED_FIFO")
	}
	t.Run("raised", func(t *testing.T) {
		Raise(t)
		// Goroutines locked to threads of their own make the runtime start
		// new threads.
		var wg sync.WaitGroup
		tids := make(chan int, 8)
		release := make(chan struct{})
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				tids <- unix.Gettid()
				<-release
			}()
		}
		for range 8 {
			if tid := <-tids; policyOf(t, tid) != unix.SCHED_FIFO {
				t.Errorf("thread %d made after Raise has policy %d, want SCHED_FIFO", tid, policyOf(t, tid))
			}
		}
		close(release)
		wg.Wait()
	})
	all, err := threads(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range all {
		if p := policyOf(t, tid); p != unix.SCHED_NORMAL {
			t.Errorf("thread %d has policy %d after the test, want SCHED_NORMAL", tid, p)
		}
	}
}

// TestRaiseTakesTurns: while one test holds its turn, another process's
// (here another open file's) attempt to take the lock fails; once the
// test ends, it succeeds.
func TestRaiseTakesTurns(t *testing.T) {
	other, err := os.OpenFile(filepath.Join(os.TempDir(), lockName), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	t.Run("holding", func(t *testing.T) {
		if err := takeTurn(t); err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(other.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Errorf("taking the lock during another test's turn: %v, want EWOULDBLOCK", err)
		}
	})
	if err := unix.Flock(int(other.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("taking the lock after the test's turn ended: %v", err)
	}
}

// TestRunawayIsKilled: a child of a raised test that spins without ever
// blocking is ended by SIGXCPU once it has used the runaway limit, instead
// of holding a CPU at real-time priority.
func TestRunawayIsKilled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_NICE) to use SCHED_FIFO")
	}
	sh := testprog.Need(t, "sh")
	Raise(t)
	// The shell's own loop makes no system call at all.
	cmd := exec.Command(sh, "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGXCPU {
		t.Fatalf("the spinning child ended with %v, want killed by SIGXCPU", err)
	}
}
