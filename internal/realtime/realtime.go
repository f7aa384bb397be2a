// Package realtime gives the threads of a real-time test the CPU when they
// wake. Tests that measure against the wall clock (a link emulator's rate
// and delay, packetdrill scripts against the kernel) fail on a machine
// whose CPUs are busy with other work only because their own threads are
// scheduled late: the code under test keeps its schedule, the test's
// process does not get to run it. Putting those threads under SCHED_FIFO
// makes them run as soon as they are runnable, ahead of every ordinary
// (SCHED_NORMAL) thread, however loaded the machine is.
//
// Such tests sleep most of the time (they move a few Mbit/s or wait for a
// script's next packet), so they take little from the rest of the run. The
// kernel's real-time throttling (/proc/sys/kernel/sched_rt_runtime_us, by
// default 950000 of every 1000000 µs) keeps even a runaway real-time
// thread from locking the machine, but leaves the rest of the machine 5 %
// of the CPUs: a test run beside a runaway crawls. So a real-time process
// also gets a limit on the CPU time it may use without blocking
// (RLIMIT_RTTIME, inherited by its children): a runaway is killed within
// seconds and its test fails, where it would otherwise starve everything
// else until the run's deadline. A program that polls without ever
// blocking (iperf3's client does, while it waits for the server's
// results) must not run under the real-time policy.
//
// Real-time tests take turns: go test runs the test binaries of several
// packages at once, and two real-time tests side by side compete for the
// CPUs at the same priority, where neither preempts the other, so each
// makes the other late. Raise holds a lock shared by every process on the
// machine (an flock on a file in the temporary directory) until the test
// ends.
package realtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// priority is the lowest real-time priority: above every ordinary thread,
// below the kernel's own real-time threads.
const priority = 1

// Raise waits until no other real-time test runs, then puts every thread
// of this process under SCHED_FIFO until the test ends. Threads made later
// inherit the policy of the thread that makes them, as the Go runtime's
// are. Without the privilege (CAP_SYS_NICE, or RLIMIT_RTPRIO), it logs so
// and the test runs as before. A test that calls it must not be parallel
// with another test of its process that calls it.
func Raise(t testing.TB) {
	t.Helper()
	if err := takeTurn(t); err != nil {
		t.Fatalf("realtime: %v", err)
	}
	// The limit stays after the test: it binds real-time threads only,
	// and raising a hard limit back needs CAP_SYS_RESOURCE.
	if err := unix.Setrlimit(unix.RLIMIT_RTTIME, &runawayLimit); err != nil {
		t.Logf("realtime: running at normal priority: cannot limit a runaway's CPU time: %v", err)
		return
	}
	if err := set(os.Getpid(), unix.SCHED_FIFO, priority); err != nil {
		t.Logf("realtime: running at normal priority: %v", err)
		return
	}
	t.Cleanup(func() {
		if err := set(os.Getpid(), unix.SCHED_NORMAL, 0); err != nil {
			t.Errorf("realtime: back to normal priority: %v", err)
		}
	})
}

// runawayLimit is the CPU time, in µs, a real-time thread may use without
// blocking: at the soft limit it gets SIGXCPU (which ends a C program; Go
// programs ignore it), at the hard limit SIGKILL. The threads of a
// real-time test block every few milliseconds, waiting for the emulated
// link's next frame or for the script's next packet; the hard limit is
// wide for Go threads that run goroutine after goroutine without a
// blocking call in between.
var runawayLimit = unix.Rlimit{Cur: 5_000_000, Max: 30_000_000}

// lockName is the file whose flock gives a real-time test its turn.
const lockName = "ustack-realtime-tests.lock"

// takeTurn blocks until this test holds the machine-wide real-time lock,
// which it keeps until it ends. The kernel drops an flock when its holder
// dies, so a killed test binary does not keep the others waiting.
func takeTurn(t testing.TB) error {
	path := filepath.Join(os.TempDir(), lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return fmt.Errorf("opening the lock that gives real-time tests turns: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		start := time.Now()
		t.Logf("realtime: waiting for another real-time test to end")
		for err = unix.Flock(int(f.Fd()), unix.LOCK_EX); errors.Is(err, unix.EINTR); {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX) // the runtime's preemption signal
		}
		t.Logf("realtime: waited %v", time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("locking %s: %w", path, err)
	}
	t.Cleanup(func() { f.Close() }) // closing the file releases the lock
	return nil
}

// RaiseProcess puts every thread of process pid under SCHED_FIFO; the
// children it forks afterwards inherit the policy. It is for the helper
// processes of a real-time test, which end with it.
func RaiseProcess(t testing.TB, pid int) {
	t.Helper()
	if err := unix.Prlimit(pid, unix.RLIMIT_RTTIME, &runawayLimit, nil); err != nil {
		t.Logf("realtime: process %d runs at normal priority: cannot limit a runaway's CPU time: %v", pid, err)
		return
	}
	if err := set(pid, unix.SCHED_FIFO, priority); err != nil {
		t.Logf("realtime: process %d runs at normal priority: %v", pid, err)
	}
}

// set gives each thread of pid the policy, until every thread seen has it
// (threads made meanwhile inherit it from one not yet set, so look again).
func set(pid int, policy uint32, prio uint32) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy, Priority: prio}
	done := map[int]bool{}
	for {
		tids, err := threads(pid)
		if err != nil {
			return err
		}
		changed := false
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			err := unix.SchedSetAttr(tid, &attr, 0)
			if errors.Is(err, unix.ESRCH) {
				continue // the thread ended
			}
			if err != nil {
				return fmt.Errorf("sched_setattr of thread %d of process %d: %w", tid, pid, err)
			}
			done[tid], changed = true, true
		}
		if !changed {
			return nil
		}
	}
}

func threads(pid int) ([]int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	var tids []int
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
