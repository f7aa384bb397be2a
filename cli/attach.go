package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/sockets"
)

// Attaching a program to a daemon's stack (ustack run --stack NAME): the
// run command launches the program under the filter, then hands the
// filter's seccomp listener to the daemon over its control socket
// (SCM_RIGHTS after a POST /v1/attach). The daemon answers the program's
// socket calls from its own stack, so every program attached to it shares
// one stack: they reach each other through 127.0.0.1 and the stack's
// address. The daemon serves the program, and everything it forks, until
// the last of them has exited, even after ustack run itself has returned.

// attacher is the daemon's side: one socket manager for every attached
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
// after the 200 response and serves it.
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
		io.WriteString(uc, "error "+err.Error()+"\n")
		return
	}
	a.mu.Lock()
	if a.stopped {
		// The daemon is shutting down; the program's calls get ENOSYS.
		a.mu.Unlock()
		sup.Stop()
		io.WriteString(uc, "error the daemon is stopping\n")
		return
	}
	a.sups[sup] = struct{}{}
	a.wg.Add(1) // under the lock: stop's Wait must see it
	a.mu.Unlock()
	io.WriteString(uc, "ok\n")
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

// attachToDaemon hands listener, the seccomp listener of a program just
// launched, to the daemon on sock. The daemon holds its own copy after.
func attachToDaemon(ctx context.Context, sock string, listener int) error {
	conn, err := dialDaemon(ctx, sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "POST /v1/attach HTTP/1.1\r\nHost: ustack\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return fmt.Errorf("--stack: talking to the daemon on %s: %w", sock, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("--stack: talking to the daemon on %s: %w", sock, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("--stack: the daemon on %s refused: %s", sock, strings.TrimSpace(string(body)))
	}
	if _, _, err := conn.(*net.UnixConn).WriteMsgUnix([]byte{0}, unix.UnixRights(listener), nil); err != nil {
		return fmt.Errorf("--stack: passing the program to the daemon: %w", err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("--stack: the daemon did not confirm: %w", err)
	}
	if msg, bad := strings.CutPrefix(strings.TrimSpace(line), "error "); bad {
		return fmt.Errorf("--stack: the daemon cannot serve the program: %s", msg)
	}
	return nil
}

// runtimeCounts is GET /v1/runtime: what the daemon holds, so that tests
// and users can see that programs which came and went left nothing behind.
type runtimeCounts struct {
	Goroutines int    `json:"goroutines"`
	FDs        int    `json:"fds"`
	Endpoints  int    `json:"endpoints"` // netstack transport endpoints
	Sockets    int    `json:"sockets"`   // program sockets being served
	Attached   int    `json:"attached"`  // program trees being served
	HeapBytes  uint64 `json:"heap_bytes"`
}

func (a *attacher) serveRuntime(w http.ResponseWriter, r *http.Request, st *ustack.Stack) {
	if r.Method != http.MethodGet {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Query().Get("gc") == "1" {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, _ := os.ReadDir("/proc/self/fd")
	c := runtimeCounts{
		Goroutines: runtime.NumGoroutine(),
		FDs:        len(fds) - 1, // the directory being read
		Endpoints:  len(st.Netstack().RegisteredEndpoints()),
		Sockets:    a.mgr.Count(),
		Attached:   a.attached(),
		HeapBytes:  ms.HeapInuse,
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c)
}
