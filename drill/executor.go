package drill

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The executor is the process whose system calls a script makes: this
// binary re-executed with executorEnv set. The runner sends it one request
// per call over its fd 0 (an AF_UNIX SOCK_SEQPACKET socket, one message per
// request or response); it makes each call for real on an OS thread of its
// own, first reporting that thread's id, then the result. Under ustack the
// executor runs under ustack run's seccomp filter, so its socket calls are
// answered by the socket layer exactly as a program's are; against the
// kernel it runs in a network namespace of its own.
//
// The script's fds must be the executor's real fds, and a script's first
// socket is fd 3, as under packetdrill; see ExecutorMain for how the Go
// runtime's own fds are kept above executorReserved.

const executorEnv = "USTACK_DRILL_EXECUTOR"

// executorReserved is the lowest fd the executor's runtime may use.
const executorReserved = 400

// executorEnviron is the executor's environment: this process's, marked.
func executorEnviron() []string {
	return append(os.Environ(), executorEnv+"=1")
}

// IsExecutor reports whether this process is a drill executor. Call it
// first thing in main (or TestMain), next to intercept.IsHelper.
func IsExecutor() bool { v := os.Getenv(executorEnv); return v == "1" || v == "2" }

// request is one call for the executor.
type request struct {
	ID   int     `json:"id"`
	Op   string  `json:"op"`
	Ints []int64 `json:"ints,omitempty"`
	// Addr is a raw sockaddr (bind, connect, sendto, sendmsg).
	Addr []byte `json:"addr,omitempty"`
	// Iov are the lengths of the buffers of readv, writev, sendmsg,
	// recvmsg.
	Iov []int `json:"iov,omitempty"`
	// Data is setsockopt's optval or ioctl's int argument.
	Data []byte `json:"data,omitempty"`
	// OutLen is the size of the buffer a call fills (getsockopt's optlen,
	// accept's and recvfrom's address).
	OutLen int       `json:"outlen,omitempty"`
	Poll   []pollReq `json:"poll,omitempty"`
}

type pollReq struct {
	FD     int32 `json:"fd"`
	Events int16 `json:"events"`
}

// response is the executor's answer: first {ID, Tid} when the call starts,
// then {ID, Done, ...} when it returns.
type response struct {
	ID       int     `json:"id"`
	Tid      int     `json:"tid,omitempty"`
	Done     bool    `json:"done,omitempty"`
	Ret      int64   `json:"ret"`
	Errno    int     `json:"errno,omitempty"`
	Out      []byte  `json:"out,omitempty"`
	OutLen   int     `json:"outlen,omitempty"`
	Revents  []int16 `json:"revents,omitempty"`
	MsgFlags int     `json:"msgflags,omitempty"`
}

// ExecutorMain runs the executor; it never returns.
//
// The Go runtime opens fds of its own before main (its poller's, and for
// GOMAXPROCS the cgroup's files), at the lowest numbers free, where a
// script's sockets must go. So the executor starts twice: the first one
// starts the second with fds 3 up to executorReserved taken by placeholders,
// which make the second's runtime open its fds above them, and then waits
// for it; the second closes the placeholders and serves the runner. (Both
// run under the seccomp filter, which children inherit.)
func ExecutorMain() {
	if os.Getenv(executorEnv) == "1" {
		os.Exit(startExecutor())
	}
	unix.CloseRange(3, executorReserved-1, 0) // the placeholders
	for fd := 3; fd < executorReserved; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			fmt.Fprintf(os.Stderr, "drill executor: fd %d is open at start; a script's first socket must be fd 3\n", fd)
			os.Exit(2)
		}
	}
	var wmu sync.Mutex
	send := func(r response) {
		b, _ := json.Marshal(r)
		wmu.Lock()
		unix.Write(0, b)
		wmu.Unlock()
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(0, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			os.Exit(0) // the runner is gone
		}
		var req request
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			fmt.Fprintf(os.Stderr, "drill executor: bad request: %v\n", err)
			os.Exit(2)
		}
		if req.Op == "reset" {
			// Between scripts: close every fd a script may have made.
			unix.CloseRange(3, executorReserved-1, 0)
			send(response{ID: req.ID, Done: true})
			continue
		}
		workers.run(func() {
			send(response{ID: req.ID, Tid: unix.Gettid()})
			resp := perform(&req)
			resp.ID, resp.Done = req.ID, true
			send(resp)
		})
	}
}

// workerPool runs each call on an OS thread of its own: its id names the
// call to the runner (which looks at its state in /proc), and a blocking
// call holds up nothing else. Threads are kept and reused, as a program's
// threads live on: the socket layer finds a socket's fd again through the
// thread that got it.
type workerPool struct {
	mu   sync.Mutex
	idle []chan func()
}

var workers workerPool

// run hands f to an idle thread, or to a new one.
func (p *workerPool) run(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w <- f
		return
	}
	p.mu.Unlock()
	w := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range w {
			f()
			p.mu.Lock()
			p.idle = append(p.idle, w)
			p.mu.Unlock()
		}
	}()
	w <- f
}

// startExecutor starts the second executor with placeholders on fds 3 and
// up and returns its exit status.
func startExecutor() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "drill executor: %v\n", err)
		return 2
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintf(os.Stderr, "drill executor: %v\n", err)
		return 2
	}
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	for len(files) < executorReserved {
		files = append(files, null)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, executorEnv+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, executorEnv+"=2")
	p, err := os.StartProcess(self, os.Args, &os.ProcAttr{Env: env, Files: files})
	null.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "drill executor: %v\n", err)
		return 2
	}
	st, err := p.Wait()
	if err != nil {
		return 2
	}
	return st.ExitCode()
}

// perform makes one call.
func perform(r *request) response {
	arg := func(i int) uintptr {
		if i < len(r.Ints) {
			return uintptr(r.Ints[i])
		}
		return 0
	}
	ptr := func(b []byte) uintptr {
		if len(b) == 0 {
			return 0
		}
		return uintptr(unsafe.Pointer(&b[0]))
	}
	var resp response
	ret := func(v uintptr, e unix.Errno) response {
		resp.Ret = int64(v)
		if e != 0 {
			resp.Ret, resp.Errno = -1, int(e)
		}
		return resp
	}
	switch r.Op {
	case "nop":
		return ret(0, 0)
	case "socket":
		v, _, e := unix.Syscall(unix.SYS_SOCKET, arg(0), arg(1), arg(2))
		return ret(v, e)
	case "bind", "connect":
		nr := uintptr(unix.SYS_BIND)
		if r.Op == "connect" {
			nr = unix.SYS_CONNECT
		}
		v, _, e := unix.Syscall(nr, arg(0), ptr(r.Addr), uintptr(len(r.Addr)))
		runtime.KeepAlive(r.Addr)
		return ret(v, e)
	case "listen":
		v, _, e := unix.Syscall(unix.SYS_LISTEN, arg(0), arg(1), 0)
		return ret(v, e)
	case "accept", "accept4":
		sa := make([]byte, 128)
		l := uint32(len(sa))
		v, _, e := unix.Syscall6(unix.SYS_ACCEPT4, arg(0), ptr(sa), uintptr(unsafe.Pointer(&l)), arg(1), 0, 0)
		resp.Out = sa[:min(int(l), len(sa))]
		return ret(v, e)
	case "getsockname", "getpeername":
		sa := make([]byte, 128)
		l := uint32(len(sa))
		nr := uintptr(unix.SYS_GETSOCKNAME)
		if r.Op == "getpeername" {
			nr = unix.SYS_GETPEERNAME
		}
		v, _, e := unix.Syscall(nr, arg(0), ptr(sa), uintptr(unsafe.Pointer(&l)))
		resp.Out = sa[:min(int(l), len(sa))]
		return ret(v, e)
	case "read", "recv", "recvfrom":
		b := make([]byte, max(arg(1), 1))
		var v uintptr
		var e unix.Errno
		switch r.Op {
		case "read":
			v, _, e = unix.Syscall(unix.SYS_READ, arg(0), ptr(b), arg(1))
		case "recv":
			v, _, e = unix.Syscall6(unix.SYS_RECVFROM, arg(0), ptr(b), arg(1), arg(2), 0, 0)
		default:
			sa := make([]byte, 128)
			l := uint32(len(sa))
			v, _, e = unix.Syscall6(unix.SYS_RECVFROM, arg(0), ptr(b), arg(1), arg(2), ptr(sa), uintptr(unsafe.Pointer(&l)))
			resp.Out = sa[:min(int(l), len(sa))]
		}
		return ret(v, e)
	case "write", "send", "sendto":
		b := make([]byte, max(arg(1), 1))
		var v uintptr
		var e unix.Errno
		switch r.Op {
		case "write":
			v, _, e = unix.Syscall(unix.SYS_WRITE, arg(0), ptr(b), arg(1))
		case "send":
			v, _, e = unix.Syscall6(unix.SYS_SENDTO, arg(0), ptr(b), arg(1), arg(2), 0, 0)
		default:
			v, _, e = unix.Syscall6(unix.SYS_SENDTO, arg(0), ptr(b), arg(1), arg(2), ptr(r.Addr), uintptr(len(r.Addr)))
		}
		runtime.KeepAlive(r.Addr)
		return ret(v, e)
	case "readv", "writev", "recvmsg", "sendmsg":
		iov := make([]unix.Iovec, len(r.Iov))
		bufs := make([][]byte, len(r.Iov))
		for i, n := range r.Iov {
			bufs[i] = make([]byte, max(n, 1))
			iov[i].Base = &bufs[i][0]
			iov[i].SetLen(n)
		}
		var iovp uintptr
		if len(iov) > 0 {
			iovp = uintptr(unsafe.Pointer(&iov[0]))
		}
		var v uintptr
		var e unix.Errno
		switch r.Op {
		case "readv":
			v, _, e = unix.Syscall(unix.SYS_READV, arg(0), iovp, uintptr(len(iov)))
		case "writev":
			v, _, e = unix.Syscall(unix.SYS_WRITEV, arg(0), iovp, uintptr(len(iov)))
		default:
			var msg unix.Msghdr
			if len(iov) > 0 {
				msg.Iov = &iov[0]
				msg.SetIovlen(len(iov))
			}
			if r.Op == "sendmsg" {
				if len(r.Addr) > 0 {
					msg.Name = &r.Addr[0]
					msg.Namelen = uint32(len(r.Addr))
				}
				v, _, e = unix.Syscall(unix.SYS_SENDMSG, arg(0), uintptr(unsafe.Pointer(&msg)), arg(1))
			} else {
				sa := make([]byte, 128)
				msg.Name = &sa[0]
				msg.Namelen = uint32(len(sa))
				v, _, e = unix.Syscall(unix.SYS_RECVMSG, arg(0), uintptr(unsafe.Pointer(&msg)), arg(1))
				resp.MsgFlags = int(msg.Flags)
			}
		}
		runtime.KeepAlive(bufs)
		runtime.KeepAlive(iov)
		runtime.KeepAlive(r.Addr)
		return ret(v, e)
	case "fcntl":
		v, _, e := unix.Syscall(unix.SYS_FCNTL, arg(0), arg(1), arg(2))
		return ret(v, e)
	case "ioctl":
		if len(r.Ints) < 3 {
			v, _, e := unix.Syscall(unix.SYS_IOCTL, arg(0), arg(1), 0)
			return ret(v, e)
		}
		var val int32 = int32(r.Ints[2])
		v, _, e := unix.Syscall(unix.SYS_IOCTL, arg(0), arg(1), uintptr(unsafe.Pointer(&val)))
		resp.OutLen = int(val)
		return ret(v, e)
	case "close":
		v, _, e := unix.Syscall(unix.SYS_CLOSE, arg(0), 0, 0)
		return ret(v, e)
	case "shutdown":
		v, _, e := unix.Syscall(unix.SYS_SHUTDOWN, arg(0), arg(1), 0)
		return ret(v, e)
	case "setsockopt":
		v, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, arg(0), arg(1), arg(2), ptr(r.Data), arg(3), 0)
		runtime.KeepAlive(r.Data)
		return ret(v, e)
	case "getsockopt":
		b := make([]byte, max(r.OutLen, 1)+1)
		l := uint32(r.OutLen)
		v, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, arg(0), arg(1), arg(2), ptr(b), uintptr(unsafe.Pointer(&l)), 0)
		resp.Out, resp.OutLen = b[:min(int(l), len(b))], int(l)
		return ret(v, e)
	case "poll":
		fds := make([]unix.PollFd, len(r.Poll))
		for i, p := range r.Poll {
			fds[i] = unix.PollFd{Fd: p.FD, Events: p.Events}
		}
		var fp uintptr
		if len(fds) > 0 {
			fp = uintptr(unsafe.Pointer(&fds[0]))
		}
		v, _, e := unix.Syscall(unix.SYS_POLL, fp, uintptr(len(fds)), arg(0))
		for _, f := range fds {
			resp.Revents = append(resp.Revents, f.Revents)
		}
		return ret(v, e)
	}
	return ret(0, unix.ENOSYS)
}
