package serve

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/sockets"
)

// Attaching a program to a served stack (ustack run --stack NAME):
// RunAttached launches the program under the filter, then hands the
// filter's seccomp listener to the stack over its control socket
// (control.Client.Attach: SCM_RIGHTS after a POST /v1/attach). The stack
// answers the program's socket calls, so every program attached to it
// shares one stack: they reach each other through 127.0.0.1 and the
// stack's address. The stack serves the program, and everything it forks,
// until the last of them has exited, even after the process that launched
// it has returned.

// attacher is the stack's side: one socket manager for every attached
// program, their supervisors, and the warden that ends them if this
// process goes away while they run (intercept.StartWarden).
type attacher struct {
	mgr    *sockets.Manager
	logf   func(string, ...any)
	prefix string // of the warden's log lines

	mu      sync.Mutex
	sups    map[*intercept.Supervisor]struct{}
	warden  *intercept.Warden // started with the first program
	stopped bool              // no more programs are taken
	wg      sync.WaitGroup
}

func newAttacher(mgr *sockets.Manager, prefix string, logf func(string, ...any)) *attacher {
	return &attacher{mgr: mgr, logf: logf, prefix: prefix, sups: map[*intercept.Supervisor]struct{}{}}
}

// serveAttach is POST /v1/attach: it takes the listener fd the client sends
// after the 200 response and serves it, answering api.AttachOK or
// api.AttachError and the reason. The connection then stays open until the
// program and all it forked have exited (then it says api.AttachDone), the
// client hangs up or the stack stops: the client sees the stack go.
func (a *attacher) serveAttach(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot take over this connection", http.StatusInternalServerError)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return
	}
	if err := checkAttacher(uc); err != nil {
		a.logf("attach: %v", err)
		msg := err.Error() + "\n"
		fmt.Fprintf(uc, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(msg), msg)
		uc.Close()
		return
	}
	sup, err := a.take(uc)
	if err != nil {
		if err != errHungUp {
			a.logf("attach: %v", err)
			io.WriteString(uc, api.AttachError+err.Error()+"\n")
		}
		uc.Close()
		return
	}
	io.WriteString(uc, api.AttachOK+"\n")
	uc.SetDeadline(time.Time{})
	go func() {
		defer a.wg.Done()
		// The client sends nothing more: the read ends when it hangs up,
		// or when the connection is closed below.
		io.Copy(io.Discard, uc)
		uc.Close()
	}()
	go func() {
		defer a.wg.Done()
		<-sup.Done() // the program and all it forked are gone, or we stop
		if sup.AllExited() {
			io.WriteString(uc, api.AttachDone+"\n")
		}
		sup.Stop()
		uc.Close()
		a.mu.Lock()
		delete(a.sups, sup)
		a.mu.Unlock()
	}()
}

// errHungUp: the client went away before it handed over a program (it
// could not launch it).
var errHungUp = errors.New("the client hung up")

// take receives the program's listener on uc and serves it. On success
// the supervisor is in a.sups, and a.wg counts the two goroutines that
// end the program's service and its connection.
func (a *attacher) take(uc *net.UnixConn) (*intercept.Supervisor, error) {
	if _, err := io.WriteString(uc, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return nil, errHungUp
	}
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	listener, err := receiveFD(uc)
	if err != nil {
		return nil, err
	}
	// Serve refuses an fd that is not a seccomp listener without using it.
	sup, err := intercept.Serve(listener, a.mgr, a.logf)
	if err != nil {
		unix.Close(listener)
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		// The stack is closing; the program is not taken.
		sup.Stop()
		return nil, errors.New("the stack is closing")
	}
	if err := a.watch(listener); err != nil {
		sup.Stop()
		return nil, err
	}
	a.sups[sup] = struct{}{}
	a.wg.Add(2) // under the lock: stop's Wait sees them
	return sup, nil
}

// watch gives the warden a copy of listener, starting a warden first if
// there is none or the last one is gone. Called with a.mu held.
func (a *attacher) watch(listener int) error {
	if a.warden != nil {
		if err := a.warden.Watch(listener); err == nil {
			return nil
		}
		a.logf("attach: the warden is gone; starting another")
		a.warden.Close()
		a.warden = nil
	}
	w, err := intercept.StartWarden(a.prefix)
	if err != nil {
		return err
	}
	if err := w.Watch(listener); err != nil {
		w.Close()
		return err
	}
	a.warden = w
	return nil
}

// checkAttacher refuses a program of root for a stack that does not run as
// root: the stack would answer root's socket calls.
func checkAttacher(uc *net.UnixConn) error {
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if credErr != nil {
		return fmt.Errorf("reading the client's credentials: %w", credErr)
	}
	if me := os.Geteuid(); cred.Uid == 0 && me != 0 {
		return fmt.Errorf("a program of root is not served by a stack of uid %d (run the daemon as root)", me)
	}
	return nil
}

// stop stops serving every attached program and lets the warden go: it
// kills those that make a socket call from then on, their stack being
// gone.
func (a *attacher) stop() {
	a.mu.Lock()
	a.stopped = true
	sups := make([]*intercept.Supervisor, 0, len(a.sups))
	for s := range a.sups {
		sups = append(sups, s)
	}
	a.mu.Unlock()
	for _, s := range sups {
		s.Stop()
	}
	a.wg.Wait()
	a.mu.Lock()
	if a.warden != nil {
		a.warden.Close()
	}
	a.mu.Unlock()
}

// attached counts the programs (process trees) being served.
func (a *attacher) attached() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sups)
}

// receiveFD reads the one byte that carries the listener.
func receiveFD(uc *net.UnixConn) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return -1, fmt.Errorf("receiving the program's seccomp listener: %w", err)
	}
	if n == 0 && oobn == 0 {
		return -1, errHungUp
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return -1, fmt.Errorf("receiving the program's seccomp listener: %w", err)
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds[1:] {
			unix.Close(fd)
		}
		if len(fds) > 0 {
			unix.CloseOnExec(fds[0])
			return fds[0], nil
		}
	}
	return -1, errors.New("no file descriptor came with the program's handover")
}

// serveRuntime is GET /v1/runtime: what the process holds, so that tests
// and users can see that programs which came and went left nothing behind.
func (s *Stack) serveRuntime(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("gc") == "1" {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, _ := os.ReadDir("/proc/self/fd")
	control.WriteJSON(w, api.Runtime{
		Goroutines: runtime.NumGoroutine(),
		FDs:        len(fds) - 1, // the directory being read
		Endpoints:  len(s.st.Netstack().RegisteredEndpoints()),
		Sockets:    s.mgr.Count(),
		Attached:   s.att.attached(),
		HeapBytes:  ms.HeapInuse,
	})
}
