package realtime

import (
	"os"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
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
