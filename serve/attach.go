package serve

import (
	"errors"
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
// program, and their supervisors.
type attacher struct {
	mgr  *sockets.Manager
	logf func(string, ...any)

	mu      sync.Mutex
	sups    map[*intercept.Supervisor]struct{}
	stopped bool // no more programs are taken
	wg      sync.WaitGroup
}

func newAttacher(mgr *sockets.Manager, logf func(string, ...any)) *attacher {
	return &attacher{mgr: mgr, logf: logf, sups: map[*intercept.Supervisor]struct{}{}}
}

// serveAttach is POST /v1/attach: it takes the listener fd the client sends
// after the 200 response and serves it, answering api.AttachOK or
// api.AttachError and the reason.
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
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return
	}
	if _, err := io.WriteString(uc, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return
	}
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	listener, err := receiveFD(uc)
	if err != nil {
		a.logf("attach: receiving the program's seccomp listener: %v", err)
		return
	}
	sup, err := intercept.Serve(listener, a.mgr, a.logf)
	if err != nil {
		unix.Close(listener)
		a.logf("attach: %v", err)
		io.WriteString(uc, api.AttachError+err.Error()+"\n")
		return
	}
	a.mu.Lock()
	if a.stopped {
		// The stack is closing; the program's calls get ENOSYS.
		a.mu.Unlock()
		sup.Stop()
		io.WriteString(uc, api.AttachError+"the stack is closing\n")
		return
	}
	a.sups[sup] = struct{}{}
	a.wg.Add(1) // under the lock: stop's Wait must see it
	a.mu.Unlock()
	io.WriteString(uc, api.AttachOK+"\n")
	go func() {
		defer a.wg.Done()
		<-sup.Done() // the program and all it forked are gone, or we stop
		sup.Stop()
		a.mu.Lock()
		delete(a.sups, sup)
		a.mu.Unlock()
	}()
}

// stop stops serving every attached program (their later socket calls get
// ENOSYS).
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
}

// attached counts the programs (process trees) being served.
func (a *attacher) attached() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sups)
}

func receiveFD(uc *net.UnixConn) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return -1, err
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
	return -1, errors.New("no file descriptor came with the message")
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
