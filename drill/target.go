package drill

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// target is a network stack under test with its executor: ustack's stack
// (in virtual or real time) or the kernel's (in real time).
type target interface {
	// name is "ustack" or "kernel".
	name() string
	// virtual reports whether time is the script's own.
	virtual() bool
	// now is the time since the run started, in µs.
	now() int64
	// startClock makes now 0: the script's time starts after its init
	// commands, as packetdrill's does.
	startClock()
	// nextDeadline is the earliest armed timer (virtual time only).
	nextDeadline() (int64, bool)
	// advanceTo moves virtual time to t and fires the timers due then.
	advanceTo(t int64)
	// settle waits until everything the last step set off has happened
	// (virtual time only; a no-op in real time).
	settle() error
	// inject hands an IP packet to the stack.
	inject(b []byte) error
	// outbound returns the packets the stack has sent since the last call,
	// stamped with their time; in real time it waits up to until for one.
	outbound(until time.Time) []*wire
	// blocked reports whether call c's thread waits in its system call
	// for something outside the stack: a packet, time, or another call.
	blocked(c *pending) bool
	// exec is the executor's client.
	exec() *execClient
	// command runs a shell command of the script for the stack.
	command(cmd string) error
	// close ends the run and releases everything.
	close() error
}

// pending is a call the executor is making.
type pending struct {
	id     int
	req    *request
	nr     int // the system call number the thread will be in
	tid    int // 0 until the executor says
	done   bool
	resp   response
	doneAt int64 // µs when the result was seen
}

// execClient talks to the executor over its control socket.
type execClient struct {
	fd    int // ours, non-blocking
	next  int
	calls map[int]*pending
	now   func() int64
	seen  int // responses read, for settle's change detection
	buf   []byte
}

func newExecClient(fd int, now func() int64) *execClient {
	return &execClient{fd: fd, calls: map[int]*pending{}, now: now, buf: make([]byte, 1<<20)}
}

// syscallNr is the system call each request makes.
var syscallNr = map[string]int{
	"socket": unix.SYS_SOCKET, "bind": unix.SYS_BIND, "connect": unix.SYS_CONNECT, "listen": unix.SYS_LISTEN,
	"accept": unix.SYS_ACCEPT4, "accept4": unix.SYS_ACCEPT4, "getsockname": unix.SYS_GETSOCKNAME,
	"getpeername": unix.SYS_GETPEERNAME, "read": unix.SYS_READ, "recv": unix.SYS_RECVFROM,
	"recvfrom": unix.SYS_RECVFROM, "write": unix.SYS_WRITE, "send": unix.SYS_SENDTO, "sendto": unix.SYS_SENDTO,
	"readv": unix.SYS_READV, "writev": unix.SYS_WRITEV, "recvmsg": unix.SYS_RECVMSG, "sendmsg": unix.SYS_SENDMSG,
	"fcntl": unix.SYS_FCNTL, "ioctl": unix.SYS_IOCTL, "close": unix.SYS_CLOSE, "shutdown": unix.SYS_SHUTDOWN,
	"setsockopt": unix.SYS_SETSOCKOPT, "getsockopt": unix.SYS_GETSOCKOPT, "poll": unix.SYS_POLL,
}

// start sends a request.
func (x *execClient) start(req *request) (*pending, error) {
	x.next++
	req.ID = x.next
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Write(x.fd, b); err != nil {
		return nil, fmt.Errorf("sending %s to the executor: %w", req.Op, err)
	}
	c := &pending{id: req.ID, req: req, nr: syscallNr[req.Op]}
	x.calls[req.ID] = c
	return c, nil
}

var errExecutorGone = errors.New("the executor exited")

// drain reads every response waiting, without blocking.
func (x *execClient) drain() error {
	for {
		n, err := unix.Read(x.fd, x.buf)
		if err == unix.EAGAIN {
			return nil
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading from the executor: %w", err)
		}
		if n == 0 {
			return errExecutorGone
		}
		var r response
		if err := json.Unmarshal(x.buf[:n], &r); err != nil {
			return fmt.Errorf("bad response from the executor: %w", err)
		}
		x.seen++
		c := x.calls[r.ID]
		if c == nil {
			continue
		}
		if !r.Done {
			c.tid = r.Tid
			continue
		}
		c.done, c.resp, c.doneAt = true, r, x.now()
		delete(x.calls, r.ID)
	}
}

// wait waits up to d for a response to arrive.
func (x *execClient) wait(d time.Duration) {
	p := []unix.PollFd{{Fd: int32(x.fd), Events: unix.POLLIN}}
	unix.Poll(p, int(d/time.Millisecond))
}

// outstanding lists the calls not yet done.
func (x *execClient) outstanding() []*pending {
	var out []*pending
	for _, c := range x.calls {
		out = append(out, c)
	}
	return out
}

// reset closes the fds a script made (to reuse the executor).
func (x *execClient) reset() error { return x.roundTrip("reset") }

// ready waits for the executor to answer, once it has started.
func (x *execClient) ready() error { return x.roundTrip("nop") }

func (x *execClient) roundTrip(op string) error {
	c, err := x.start(&request{Op: op})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for !c.done {
		if time.Now().After(deadline) {
			return fmt.Errorf("the executor did not answer a %s request within 10s", op)
		}
		x.wait(10 * time.Millisecond)
		if err := x.drain(); err != nil {
			return err
		}
	}
	return nil
}

// The executor's threads are looked up by thread id alone (/proc/TID works
// for any thread): the process that runs the calls is the executor's child.

// threadSyscall reports the system call thread tid is blocked in; ok is
// false if it is running (or gone).
func threadSyscall(tid int) (nr int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", tid))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || f[0] == "running" {
		return 0, false
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, false
	}
	return n, true
}

// threadState is the state letter of /proc/TID/stat (R, S, D...).
func threadState(tid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", tid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// threadWchan is the kernel function thread tid sleeps in.
func threadWchan(tid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", tid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// sleepingIn reports whether thread tid sleeps inside system call nr.
func sleepingIn(tid, nr int) bool {
	if tid == 0 {
		return false
	}
	n, ok := threadSyscall(tid)
	return ok && n == nr && threadState(tid) == 'S'
}
