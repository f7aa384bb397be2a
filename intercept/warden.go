package intercept

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The warden. When the process answering a program's calls goes away
// while the program runs, nobody holds the listener any more and the
// kernel fails every notified call with ENOSYS. The program's sockets were
// socket pairs whose other ends that process held: they now poll readable
// and hung up, so a server's loop (poll says readable, accept fails, poll
// again) spins at full CPU forever. A stack that serves programs launched
// by other processes (a daemon) may go away while they run, by a crash or
// SIGKILL too, and may outlive the process that launched them.
//
// So such a stack starts a warden: this binary re-executed (like the
// launch helper), which holds a copy of every listener the stack serves
// and does nothing while the stack lives. When the stack's process is gone
// (its end of the link closes, whatever the cause), the warden answers the
// programs left: each one that makes a socket call is killed, since its
// network is gone, and the warden exits once the last program has.

const (
	wardenMode   = "warden" // the value of helperEnv that makes a warden
	wardenLinkFD = 3        // the warden's end of the link (ExtraFiles[0])
)

// Warden is the stack's side of a running warden.
type Warden struct {
	mu     sync.Mutex
	link   int // -1 once closed
	waited chan struct{}
}

// StartWarden starts a warden whose log lines, on this process's stderr,
// start with prefix.
func StartWarden(prefix string) (*Warden, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding ustack's own executable to run the warden: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("the warden's link: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "warden link")
	cmd := &exec.Cmd{
		Path:       self,
		Args:       []string{"ustack-warden", prefix},
		Env:        append(os.Environ(), helperEnv+"="+wardenMode),
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{theirs},
		// A process group of its own: a Ctrl-C meant for the stack must
		// not end the warden, whose work starts when the stack ends.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("starting the warden: %w", err)
	}
	w := &Warden{link: fds[0], waited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(w.waited)
	}()
	return w, nil
}

// Watch gives the warden a copy of listener; the caller keeps its own. An
// error means the warden is gone.
func (w *Warden) Watch(listener int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.link < 0 {
		return errors.New("the warden is closed")
	}
	if err := unix.Sendmsg(w.link, []byte{0}, unix.UnixRights(listener), nil, unix.MSG_NOSIGNAL); err != nil {
		return fmt.Errorf("handing the program to the warden: %w", err)
	}
	return nil
}

// Close lets the warden go: it takes over the programs still running and
// exits when none is left (at once if there is none). A stack that exits
// without calling Close lets it go all the same.
func (w *Warden) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.link >= 0 {
		unix.Close(w.link)
		w.link = -1
	}
}

// Exited is closed when the warden has exited (and been reaped).
func (w *Warden) Exited() <-chan struct{} { return w.waited }

// wardenMain is the warden's process.
func wardenMain() {
	prefix := "ustack"
	if len(os.Args) > 1 {
		prefix = os.Args[1]
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, prefix+": "+format+"\n", args...)
	}
	held := holdListeners(wardenLinkFD, logf)
	var sups []*Supervisor
	for _, l := range held {
		sup, err := Serve(l, killCaller(logf), logf)
		if err != nil {
			unix.Close(l)
			logf("the stack is gone and a program it served cannot be watched: %v", err)
			continue
		}
		sups = append(sups, sup)
	}
	for _, s := range sups {
		<-s.Done()
		s.Stop()
	}
	os.Exit(0)
}

// holdListeners keeps the listeners that come over the link, and lets go
// of those whose programs have all exited, until the link closes: the
// stack is gone. It returns the listeners held then.
func holdListeners(link int, logf func(string, ...any)) []int {
	var held []int
	for {
		fds := []unix.PollFd{{Fd: int32(link), Events: unix.POLLIN}}
		for _, l := range held {
			// No events asked: the notifications are the stack's to
			// take; POLLHUP, always reported, says that no task is left
			// under the filter.
			fds = append(fds, unix.PollFd{Fd: int32(l)})
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			logf("warden: poll: %v", err)
			return held
		}
		kept := held[:0]
		for i, l := range held {
			if fds[i+1].Revents != 0 {
				unix.Close(l)
				continue
			}
			kept = append(kept, l)
		}
		held = kept
		if fds[0].Revents == 0 {
			continue
		}
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := unix.Recvmsg(link, make([]byte, 1), oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 && oobn == 0 {
			return held // the stack's end is closed
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			got, _ := unix.ParseUnixRights(&m)
			for _, fd := range got {
				if CheckListener(fd) != nil {
					unix.Close(fd)
					continue
				}
				held = append(held, fd)
			}
		}
	}
}

// killCaller answers a program whose stack is gone: it kills the process
// that made the call, which would otherwise go on with sockets that no
// longer work.
func killCaller(logf func(string, ...any)) Handler {
	var mu sync.Mutex
	told := map[int]bool{}
	return HandlerFunc(func(c *Call) {
		pid, _ := tgidOf(c.Tid())
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if fd, err := c.pidfd(); err == nil {
			// Only while the call is valid is the pidfd surely the
			// caller's (see GetFD). SIGKILL ends every thread.
			if c.Valid() && unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil {
				mu.Lock()
				if !told[pid] {
					told[pid] = true
					logf("the stack is gone: killed pid %d (%s) at its socket call", pid, trimNewline(comm))
				}
				mu.Unlock()
			}
			unix.Close(fd)
		}
		c.Fail(unix.ENETDOWN) // if it is still waiting
	})
}

func trimNewline(b []byte) string {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	return string(b)
}
