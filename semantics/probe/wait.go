package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testwait"
)

// The probe waits for what a step needs — a thread inside a blocking
// call, bytes queued, an ACK back — by looking at it, never by sleeping:
// a loaded machine makes every guessed pause too short now and then.

// waitFor polls check until it returns nil; when testwait's ceiling
// passes first it ends the probe, saying what it waited for and saw.
func waitFor(what string, check func() error) {
	if err := testwait.Until(context.Background(), what, check); err != nil {
		fmt.Println("fatal:", err)
		os.Exit(1)
	}
}

// blockedIn waits until thread tid is blocked in system call nr. The
// first field of /proc/self/task/TID/syscall is the number of the call a
// sleeping thread is in ("running" while it runs); under `ustack run` a
// call held for the stack's answer shows there the same way.
func blockedIn(tid int, name string, nr int) {
	path := fmt.Sprintf("/proc/self/task/%d/syscall", tid)
	waitFor(fmt.Sprintf("thread %d to block in %s (%d)", tid, name, nr), func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f := strings.Fields(string(b))
		if len(f) > 0 && f[0] == strconv.Itoa(nr) {
			return nil
		}
		return fmt.Errorf("%s: %q", path, strings.TrimSpace(string(b)))
	})
}

// lockedTID pins the calling goroutine to its thread, for blockedIn to
// watch that thread, and returns the thread's id.
func lockedTID() int {
	runtime.LockOSThread()
	return unix.Gettid()
}

// queued waits until at least n bytes wait to be read on stream socket fd.
func queued(fd, n int) {
	waitFor(fmt.Sprintf("%d bytes to read on fd %d", n, fd), func() error {
		q, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil {
			return err
		}
		if q < n {
			return fmt.Errorf("%d bytes queued", q)
		}
		return nil
	})
}

// polled waits until poll reports one of the events in want on fd.
func polled(fd int, what string, want int16) {
	waitFor(fmt.Sprintf("%s on fd %d", what, fd), func() error {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: want}}
		if _, err := unix.Poll(pfd, 0); err != nil {
			return err
		}
		if pfd[0].Revents&want == 0 {
			return fmt.Errorf("revents %#x", pfd[0].Revents)
		}
		return nil
	})
}

// acked waits until everything sent on fd has been acknowledged.
func acked(fd int) {
	waitFor(fmt.Sprintf("the ACK of all that fd %d sent", fd), func() error {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		if ti.Unacked != 0 {
			return fmt.Errorf("%d segments unacknowledged", ti.Unacked)
		}
		return nil
	})
}

// synAgain waits until connecting socket fd has sent its SYN a second
// time: the first went unanswered for a retransmission timeout.
func synAgain(fd int) {
	waitFor(fmt.Sprintf("a second SYN on fd %d", fd), func() error {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		if ti.State != tcpSynSent || ti.Segs_out < 2 {
			return fmt.Errorf("state %d, %d segments sent", ti.State, ti.Segs_out)
		}
		return nil
	})
}

// tcpSynSent is TCP_SYN_SENT in tcp_info's state.
const tcpSynSent = 2
