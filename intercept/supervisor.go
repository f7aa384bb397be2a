package intercept

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/growstack"
	"github.com/ustack/ustack/internal/nbio"
)

// Handler answers notified system calls. Handle runs in a goroutine of its
// own per call, so it may park (a blocking connect or accept) without
// holding up other calls. It must answer the call exactly once (Return,
// Fail, Continue or ReturnFD); a call left unanswered gets ENOSYS.
type Handler interface {
	Handle(c *Call)
}

// Parker is implemented by handlers some of whose calls may park. Calls
// for which MayPark is false are answered on the notification loop's own
// thread: handing a call to another thread costs more than most answers
// (tens of µs on a VM), so quick calls are cheapest inline.
type Parker interface {
	MayPark(nr int) bool
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Call)

// Handle calls f(c).
func (f HandlerFunc) Handle(c *Call) { f(c) }

// Process is a program running under the filter.
type Process struct {
	cmd *exec.Cmd
	sup *Supervisor // nil when another process answers the calls
}

// Supervisor answers the notified calls of every task under one filter.
type Supervisor struct {
	listener int
	handler  Handler
	logf     func(string, ...any)

	ctx    context.Context // cancelled when the supervisor stops
	cancel context.CancelFunc

	// listenerFile owns listener, in Go's poller; Stop ends the loop's
	// wait with a deadline in the past.
	listenerFile *os.File
	listenerConn syscall.RawConn
	loopDone     chan struct{}
	allExited    atomic.Bool // the loop ended because no task was left
	handlers     sync.WaitGroup
	stopOnce     sync.Once

	pidfds threadFDCache // the calling threads' pidfds, kept for their next calls
	fdDirs threadFDCache // the calling threads' /proc/TID/fd directories, likewise
}

// Start launches the program under the filter and starts answering its
// calls.
func Start(cfg Config) (*Process, error) {
	if cfg.Handler == nil {
		return nil, errors.New("intercept: no Handler")
	}
	p, listener, err := Launch(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Warden != nil {
		if err := cfg.Warden.Watch(listener); err != nil {
			unix.Close(listener)
			p.cmd.Process.Kill()
			p.cmd.Wait()
			return nil, err
		}
	}
	sup, err := Serve(listener, cfg.Handler, cfg.Logf)
	if err != nil {
		unix.Close(listener)
		p.cmd.Process.Kill()
		p.cmd.Wait()
		return nil, err
	}
	p.sup = sup
	return p, nil
}

// Launch starts the program under the filter without answering its calls:
// that is for whoever gets the returned seccomp listener fd (Serve), in
// this process or, passed over a unix socket, in another. The caller owns
// the fd. The program's first notified call waits until someone serves.
func Launch(cfg Config) (*Process, int, error) {
	if err := CheckKernel(); err != nil {
		return nil, -1, err
	}
	if err := notifSizes(); err != nil {
		return nil, -1, err
	}
	cmd, listener, err := launch(&cfg)
	if err != nil {
		return nil, -1, err
	}
	return &Process{cmd: cmd}, listener, nil
}

// Serve answers the calls notified on listener with h until every task
// under the filter is gone or Stop is called. It takes over listener. An
// fd that is not a seccomp listener is refused without being used (it may
// come from another process); the caller still owns it then.
func Serve(listener int, h Handler, logf func(string, ...any)) (*Supervisor, error) {
	if err := CheckListener(listener); err != nil {
		return nil, err
	}
	if err := notifSizes(); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(listener, true); err != nil {
		return nil, fmt.Errorf("seccomp listener: %w", err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	f := os.NewFile(uintptr(listener), "seccomp-listener")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("seccomp listener: %w", err)
	}
	s := &Supervisor{listener: listener, handler: h, logf: logf, listenerFile: f, listenerConn: wrapListener(rc), loopDone: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.loop()
	return s, nil
}

// Done is closed when the supervisor has stopped receiving calls: every
// task under the filter is gone, or Stop was called.
func (s *Supervisor) Done() <-chan struct{} { return s.loopDone }

// AllExited reports whether the supervisor stopped because every task
// under the filter had exited (as seen by the kernel, which may be a
// moment before their parent can reap them), rather than by Stop.
func (s *Supervisor) AllExited() bool { return s.allExited.Load() }

// Stop stops answering: calls still parked are abandoned (their callers
// are gone or, for processes left behind, get ENOSYS from now on), and the
// listener is closed.
func (s *Supervisor) Stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.listenerFile.SetReadDeadline(time.Unix(1, 0))
		<-s.loopDone
		s.handlers.Wait()
		s.pidfds.closeAll()
		s.fdDirs.closeAll()
		s.listenerFile.Close()
	})
}

// wrapListener lets a test stand between the loop and Go's poller.
var wrapListener = func(rc syscall.RawConn) syscall.RawConn { return rc }

// listenerLink is what /proc/self/fd says a seccomp listener is: the
// kernel's anonymous inode of that name, which nothing else can have.
const listenerLink = "anon_inode:seccomp notify"

// CheckListener says whether fd is a seccomp listener, by what the kernel
// says it is, without reading, writing or asking it anything.
func CheckListener(fd int) error {
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return fmt.Errorf("the file descriptor handed over: %w", err)
	}
	if link != listenerLink {
		return fmt.Errorf("the file descriptor handed over is not a seccomp listener but %s", link)
	}
	return nil
}

// Pid is the program's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the program.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited reports whether the program has exited, without reaping it.
func (p *Process) Exited() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, p.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	// ECHILD: Wait has reaped it already. Otherwise Linux sets si_signo
	// to SIGCHLD only if it found the program exited.
	return err != nil || info.Signo == int32(unix.SIGCHLD)
}

// Wait waits for the program to exit, then stops its supervisor, if it
// has one here.
func (p *Process) Wait() (*os.ProcessState, error) {
	err := p.cmd.Wait()
	if p.sup != nil {
		p.sup.Stop()
	}
	return p.cmd.ProcessState, err
}

// loop receives notifications until every task under the filter is gone
// (the listener reports POLLHUP) or Wait stops it. It waits in Go's
// poller, as the relays do, so no thread is held blocked in the kernel
// while the program computes: a notification wakes the poller's thread,
// which runs the loop and the handler it starts.
func (p *Supervisor) loop() {
	defer close(p.loopDone)
	for {
		c, hup, err := p.receive()
		switch {
		case err != nil:
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, os.ErrClosed) {
				p.logf("seccomp listener: %v", err)
			}
			return
		case hup:
			p.allExited.Store(true)
			return // no task is left under the filter
		case c == nil:
			continue
		}
		p.handlers.Add(1)
		if pk, ok := p.handler.(Parker); ok && !pk.MayPark(c.Nr()) {
			p.handle(c)
		} else {
			go func() {
				growstack.Grow() // see growstack; not for calls answered inline
				p.handle(c)
			}()
		}
	}
}

// receive waits for the next notification and takes it. It returns a nil
// call when the one announced was gone before RECV took it (its caller was
// interrupted or died), and hup when no task is left under the filter.
func (p *Supervisor) receive() (c *Call, hup bool, err error) {
	var rerr error
	take := func(fd uintptr) bool { return p.take(fd, &c, &hup, &rerr) }
	for {
		err = p.listenerConn.Read(take)
		switch {
		case err == nil:
			return c, hup, rerr
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
			return nil, false, err
		}
		// The poller gave up on the listener: the kernel's poll of it says
		// POLLERR alone when the polling thread has a signal pending (see
		// take), and when that thread is the poller's, Go keeps reporting
		// the error until the listener's next event, which may never come
		// if the notification that woke it is the last. Look on this
		// thread instead, a moment at a time, until the poller is back.
		if p.ctx.Err() != nil {
			return nil, false, os.ErrDeadlineExceeded // Stop
		}
		took := false
		if cerr := p.listenerConn.Control(func(fd uintptr) {
			unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 10)
			took = take(fd)
		}); cerr != nil {
			return nil, false, cerr
		}
		if took {
			return c, hup, rerr
		}
	}
}

// take takes the pending notification into *c, if there is one, and
// reports whether it took one, found no task left (*hup), or failed (*rerr).
func (p *Supervisor) take(fd uintptr, c **Call, hup *bool, rerr *error) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		pfd[0].Revents = 0
		if n, perr := nbio.PollNow(pfd); perr == unix.EINTR {
			continue
		} else if perr != nil || n == 0 {
			return false // nothing pending
		}
		// POLLERR alone is no end: the kernel's poll of the listener says
		// so when a signal interrupts its wait for the notification lock
		// (a SIGCHLD, a SIGURG), and the tasks are still there. The signal
		// is taken on the way out of poll, so look again now: the poller
		// reports a notification once.
		if pfd[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0 {
			break
		}
	}
	if pfd[0].Revents&unix.POLLIN == 0 {
		*hup = true
		return true
	}
	*c = &Call{p: p}
	// RECV insists on a zeroed buffer.
	if e := ioctlPtr(int(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&(*c).n)); e != nil {
		*c = nil
		if e != unix.ENOENT && e != unix.EINTR && e != unix.EAGAIN {
			*rerr = e
		}
	}
	return true
}

func (p *Supervisor) handle(c *Call) { p.run(c, func() { p.handler.Handle(c) }) }

// run answers c with f, which must answer it or park it.
func (p *Supervisor) run(c *Call, f func()) {
	defer p.handlers.Done()
	defer func() {
		if r := recover(); r != nil {
			// A bug of ours must not take the program's network down with
			// it: say what happened and fail only this call.
			p.logf("BUG: handling syscall %d: %v\n%s", c.n.Data.Nr, r, debug.Stack())
			if !c.answered {
				c.Fail(unix.EIO)
			}
		}
	}()
	f()
	if c.parked {
		return // answered by the goroutine Park started
	}
	if !c.answered {
		p.logf("BUG: syscall %d left unanswered", c.n.Data.Nr)
		c.Fail(unix.ENOSYS)
	}
}

// ErrGone means the notification is no longer valid: the calling thread
// was interrupted by a signal (it may restart the call, which arrives as a
// new notification) or has died.
var ErrGone = errors.New("the calling thread is no longer in the system call")

// Call is one notified system call.
type Call struct {
	p        *Supervisor
	n        seccompNotif
	answered bool
	parked   bool
}

// Park hands the rest of the call to a goroutine of its own, for a call
// answered inline that turns out to need waiting after all (a blocking
// receive with nothing queued). f gets the call to answer; whoever called
// Park must not touch c afterwards.
func (c *Call) Park(f func(*Call)) {
	c.parked = true
	c.p.handlers.Add(1)
	nc := &Call{p: c.p, n: c.n}
	go func() {
		growstack.Grow()
		nc.p.run(nc, func() { f(nc) })
	}()
}

// Nr is the system call number.
func (c *Call) Nr() int { return int(c.n.Data.Nr) }

// Arg returns argument i (0-5).
func (c *Call) Arg(i int) uint64 { return c.n.Data.Args[i] }

// Tid is the calling thread.
func (c *Call) Tid() int { return int(c.n.Pid) }

// Context is cancelled when the supervisor stops; parked calls use it.
func (c *Call) Context() context.Context { return c.p.ctx }

// Logf reports trouble through the supervisor's log.
func (c *Call) Logf(format string, args ...any) { c.p.logf(format, args...) }

// Valid reports whether the caller is still waiting for this call's answer.
func (c *Call) Valid() bool {
	id := c.n.ID
	return ioctlPtr(c.p.listener, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) == nil
}

// ReadMem fills buf from the caller's memory at addr. An unreadable
// address is EFAULT, as the kernel would say. The notification is checked
// afterwards: if the thread has moved on, the bytes may belong to something
// else and ErrGone is returned instead.
func (c *Call) ReadMem(addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := nbio.ProcessVMReadv(c.Tid(), local, remote)
	if !c.Valid() {
		return ErrGone
	}
	if err != nil || n != len(buf) {
		return unix.EFAULT
	}
	return nil
}

// MemRegion is one region of the caller's memory: Buf's length of it at
// Addr, read into Buf or written from it.
type MemRegion struct {
	Addr uint64
	Buf  []byte
}

// MemRead and MemWrite name the way a region goes.
type (
	MemRead  = MemRegion
	MemWrite = MemRegion
)

// vectors gives process_vm_readv(2) and process_vm_writev(2) the regions
// that hold any bytes, and their total length.
func vectors(rs []MemRegion) ([]unix.Iovec, []unix.RemoteIovec, int) {
	local := make([]unix.Iovec, 0, len(rs))
	remote := make([]unix.RemoteIovec, 0, len(rs))
	total := 0
	for _, r := range rs {
		if len(r.Buf) == 0 {
			continue
		}
		v := unix.Iovec{Base: &r.Buf[0]}
		v.SetLen(len(r.Buf))
		local = append(local, v)
		remote = append(remote, unix.RemoteIovec{Base: uintptr(r.Addr), Len: len(r.Buf)})
		total += len(r.Buf)
	}
	return local, remote, total
}

// ReadMems fills several regions in one system call (an address and the
// data it goes with, say) and says how many bytes it read: the regions
// before the first it could not read in full, whose error is EFAULT. As
// with ReadMem, ErrGone instead if the thread has moved on.
func (c *Call) ReadMems(rs ...MemRead) (int, error) {
	local, remote, total := vectors(rs)
	if total == 0 {
		return 0, nil
	}
	// A partial read stops between regions, never inside one
	// (process_vm_readv(2)).
	n, err := nbio.ProcessVMReadv(c.Tid(), local, remote)
	if !c.Valid() {
		return 0, ErrGone
	}
	if err != nil {
		return 0, unix.EFAULT
	}
	if n != total {
		return n, unix.EFAULT
	}
	return n, nil
}

// WriteMem copies buf into the caller's memory at addr (EFAULT if it
// cannot).
func (c *Call) WriteMem(addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := nbio.ProcessVMWritev(c.Tid(), local, remote)
	if err != nil || n != len(buf) {
		if !c.Valid() {
			return ErrGone
		}
		return unix.EFAULT
	}
	return nil
}

// WriteMems writes several regions in one system call (a result and its
// length, say), in order; EFAULT if any cannot be written in full, the
// regions before it having been written, as the kernel's copies leave them.
func (c *Call) WriteMems(ws ...MemWrite) error {
	local, remote, total := vectors(ws)
	if total == 0 {
		return nil
	}
	n, err := nbio.ProcessVMWritev(c.Tid(), local, remote)
	if err != nil || n != total {
		if !c.Valid() {
			return ErrGone
		}
		return unix.EFAULT
	}
	return nil
}

// StatFD returns what fstat would say in the caller about its fd: one
// fstatat on the calling thread's /proc/TID/fd directory, which is kept
// open for the thread's next calls (instead of copying the fd over with
// pidfd_getfd, fstat and close: two system calls fewer per call). A
// number that is not an open fd is EBADF. Where /proc will not let us
// look (mounted hidepid), the copy is taken instead.
func (c *Call) StatFD(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	if fd < 0 {
		return st, unix.EBADF
	}
	name := strconv.Itoa(fd)
	if dir, release, cached := c.p.fdDirs.get(c.Tid()); cached {
		err := nbio.Fstatat(dir, name, &st, 0)
		// ENOENT is an fd that is not open, or a thread that has died
		// since (its directory finds nothing any more): look afresh.
		release(errors.Is(err, unix.ENOENT))
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return st, fmt.Errorf("stat of fd %d: %w", fd, err)
		}
	}
	dir, err := unix.Open("/proc/"+strconv.Itoa(c.Tid())+"/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if !c.Valid() {
			return st, ErrGone
		}
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return c.statByCopy(fd)
		}
		return st, fmt.Errorf("opening /proc/%d/fd: %w", c.Tid(), err)
	}
	// As with a pidfd: only while the call is valid is the TID surely the
	// caller's.
	if !c.Valid() {
		unix.Close(dir)
		return st, ErrGone
	}
	err = nbio.Fstatat(dir, name, &st, 0)
	c.p.fdDirs.put(c.Tid(), dir)
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, unix.ENOENT):
		if !c.Valid() {
			return st, ErrGone
		}
		return st, unix.EBADF
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return c.statByCopy(fd)
	}
	return st, fmt.Errorf("stat of fd %d: %w", fd, err)
}

// statByCopy is StatFD through a copy of the fd.
func (c *Call) statByCopy(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	dup, err := c.GetFD(fd)
	if err != nil {
		return st, err
	}
	err = unix.Fstat(dup, &st)
	nbio.Close(dup) // never keep the program's end open: EOF would not arrive
	return st, err
}

// GetFD returns a copy (a new fd in this process, close-on-exec) of the
// caller's fd. The caller of GetFD must close it soon: a copy held open
// keeps the program's socket alive after the program closes it.
// A number that is not an open fd in the caller is EBADF.
func (c *Call) GetFD(fd int) (int, error) {
	// A pidfd kept from the thread's earlier call is surely the caller's
	// if its thread still lives: a pidfd names one thread, never a TID
	// the kernel hands out again. If the thread has died since,
	// pidfd_getfd says ESRCH, and the TID is opened afresh.
	pidfd, release, cached := c.p.pidfds.get(c.Tid())
	dup, err := -1, error(unix.ESRCH)
	if cached {
		dup, err = nbio.PidfdGetfd(pidfd, fd, 0)
		release(errors.Is(err, unix.ESRCH))
	}
	if errors.Is(err, unix.ESRCH) {
		if pidfd, err = c.pidfd(); err != nil {
			if !c.Valid() {
				return -1, ErrGone
			}
			return -1, err
		}
		// A notification whose thread has died may name a TID the kernel has
		// since given to another program's thread: only while the call is
		// still valid is the pidfd surely the caller's.
		if !c.Valid() {
			unix.Close(pidfd)
			return -1, ErrGone
		}
		dup, err = nbio.PidfdGetfd(pidfd, fd, 0)
		c.p.pidfds.put(c.Tid(), pidfd)
	}
	if err != nil {
		if !c.Valid() {
			return -1, ErrGone
		}
		if errors.Is(err, unix.EBADF) {
			return -1, unix.EBADF
		}
		return -1, fmt.Errorf("pidfd_getfd(%d): %w", fd, err)
	}
	return dup, nil
}

// pidfd opens the calling thread. Every Go program, and any other
// multi-threaded one, calls from threads other than its leader, so the
// thread itself is opened (PIDFD_THREAD, Linux 6.9); older kernels fall
// back to the thread group leader, which shares the fd table in all but
// exotic clone(2) uses.
func (c *Call) pidfd() (int, error) {
	fd, err := unix.PidfdOpen(c.Tid(), unix.PIDFD_THREAD)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return -1, fmt.Errorf("pidfd_open(%d): %w", c.Tid(), err)
	}
	tgid, terr := tgidOf(c.Tid())
	if terr != nil {
		return -1, terr
	}
	fd, err = unix.PidfdOpen(tgid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open(%d): %w", tgid, err)
	}
	return fd, nil
}

// Tgid returns the process (thread group) the thread tid belongs to.
func Tgid(tid int) (int, error) { return tgidOf(tid) }

func tgidOf(tid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return -1, err
	}
	var tgid int
	for _, line := range splitLines(b) {
		if n, _ := fmt.Sscanf(line, "Tgid: %d", &tgid); n == 1 {
			return tgid, nil
		}
	}
	return -1, fmt.Errorf("no Tgid in /proc/%d/status", tid)
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, ch := range b {
		if ch == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

func (c *Call) send(r seccompNotifResp) error {
	c.answered = true
	r.ID = c.n.ID
	if err := ioctlPtr(c.p.listener, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r)); err != nil {
		if err == unix.ENOENT {
			return ErrGone
		}
		return fmt.Errorf("SECCOMP_IOCTL_NOTIF_SEND: %w", err)
	}
	return nil
}

// Return answers the call with a successful result val.
func (c *Call) Return(val int64) error { return c.send(seccompNotifResp{Val: val}) }

// Fail answers the call with an error number.
func (c *Call) Fail(errno unix.Errno) error {
	if errno == 0 {
		errno = unix.EIO
	}
	return c.send(seccompNotifResp{Error: -int32(errno)})
}

// Continue lets the kernel run the call as if it had not been filtered. It
// is safe only where the kernel checks the call itself (a call on an fd
// that is not one of ours).
func (c *Call) Continue() error {
	return c.send(seccompNotifResp{Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE})
}

// ReturnFD installs a copy of fd (ours) into the caller and answers the
// call with the new fd number, in one step: if the caller was interrupted,
// nothing is installed and ErrGone is returned.
func (c *Call) ReturnFD(fd int, cloexec bool) (int, error) {
	c.answered = true
	a := seccompNotifAddfd{ID: c.n.ID, Flags: unix.SECCOMP_ADDFD_FLAG_SEND, Srcfd: uint32(fd)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	r, e := addfdAndSend(c.p.listener, &a)
	if e != 0 {
		if e == unix.ENOENT {
			return -1, ErrGone
		}
		if e == unix.EINPROGRESS {
			// Already answered: the kernel withdrew the fd after a signal
			// the mask does not hold back (SIGSTOP, the freezer), and the
			// call returns 0 to the program.
			c.p.logf("syscall %d: the kernel dropped the fd it was to return (interrupted injection); the program got 0", c.n.Data.Nr)
			return -1, fmt.Errorf("SECCOMP_IOCTL_NOTIF_ADDFD: %w", e)
		}
		// The call is still waiting: answer it with the error (EMFILE
		// when the caller's fd table is full).
		c.answered = false
		c.Fail(e)
		return -1, fmt.Errorf("SECCOMP_IOCTL_NOTIF_ADDFD: %w", e)
	}
	return int(r), nil
}

// addfdAndSend runs SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND
// with every signal blocked on the calling thread. The kernel marks the
// call answered before it waits for the target to install the fd; a signal
// that interrupts that wait first (Go's preemption SIGURG, a profiler's
// SIGPROF) makes the kernel withdraw the fd but keep the answer, and the
// program's call returns 0 with nothing installed: socket() "succeeds"
// with the program's stdin. Signals blocked here are delivered when the
// mask is restored.
func addfdAndSend(listener int, a *seccompNotifAddfd) (uintptr, unix.Errno) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return 0, unix.EINVAL // never, for a valid mask
	}
	r, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_ADDFD, uintptr(unsafe.Pointer(a))) // see nbio
	unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	return r, e
}
