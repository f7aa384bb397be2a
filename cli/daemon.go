package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ustack"
	"ustack/sockets"
)

func daemonCommand() *command {
	c := &command{name: "daemon", summary: "run a named, long-lived stack served on a control socket"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var sf stackFlags
		var name string
		s.add(&option{names: []string{"name"}, arg: "NAME", value: stringValue{&name},
			help: "the stack's name; other commands reach it with --stack NAME (required)"})
		sf.register(s)
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args); err != nil {
				return err
			}
			if err := checkName(name); err != nil {
				return err
			}
			return runDaemon(ctx, name, &sf, e)
		}
	}
	return c
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkName(name string) error {
	if name == "" {
		return usagef("daemon: --name: missing (give the stack a name, e.g. --name lab1)")
	}
	if !validName.MatchString(name) {
		return usagef("--name: %q is not a valid name (use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", name)
	}
	return nil
}

// socketDir is where daemons put their control sockets: under
// $XDG_RUNTIME_DIR, else /run/ustack for root and /tmp/ustack-UID for others.
func socketDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "ustack")
	}
	if os.Getuid() == 0 {
		return "/run/ustack"
	}
	return fmt.Sprintf("/tmp/ustack-%d", os.Getuid())
}

// daemonSocket is the control socket of the daemon called name.
func daemonSocket(name string) (string, error) {
	if err := checkName(name); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return "", usagef("%s", strings.Replace(ue.msg, "--name", "--stack", 1))
		}
		return "", err
	}
	return filepath.Join(socketDir(), name+".sock"), nil
}

// makeSocketDir creates dir owner-only, and refuses one that someone else
// owns or others may write to: in /tmp another user could have made it.
func makeSocketDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the control socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() {
		return fmt.Errorf("control socket directory %s is not a directory of yours (remove it, or set XDG_RUNTIME_DIR)", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("control socket directory: %w", err)
		}
	}
	return nil
}

// nameLock is held by the live daemon of a name, for its whole life. A lock
// rather than a probe of the socket, so that two daemons started at once
// cannot both decide the name is free.
type nameLock struct {
	f    *os.File
	path string
}

func lockName(dir, name, sock string) (*nameLock, error) {
	path := filepath.Join(dir, name+".lock")
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			pid, _ := io.ReadAll(io.LimitReader(f, 32))
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				who := ""
				if p := strings.TrimSpace(string(pid)); p != "" {
					who = " (pid " + p + ")"
				}
				return nil, usagef("--name: a daemon named %s is already running%s on %s (stop it first, or choose another name)", name, who, sock)
			}
			return nil, fmt.Errorf("--name: locking %s: %w", path, err)
		}
		// A daemon exiting removes the lock file; if that happened between
		// our open and flock, we hold a lock on a file no one else sees.
		var fst, pst unix.Stat_t
		if unix.Fstat(int(f.Fd()), &fst) == nil && unix.Stat(path, &pst) == nil && fst.Ino == pst.Ino && fst.Dev == pst.Dev {
			f.Truncate(0)
			f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
			return &nameLock{f: f, path: path}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("--name: could not lock %s", path)
}

func (l *nameLock) release() {
	os.Remove(l.path)
	l.f.Close()
}

// daemonInfo is the answer to GET /v1/info.
type daemonInfo struct {
	Name       string   `json:"name"`
	PID        int      `json:"pid"`
	Attachment string   `json:"attachment"`
	Addresses  []string `json:"addresses"`
	MTU        int      `json:"mtu"`
	Socket     string   `json:"socket"`
	Version    string   `json:"version"`
}

func runDaemon(ctx context.Context, name string, sf *stackFlags, e *env) error {
	dir := socketDir()
	if err := makeSocketDir(dir); err != nil {
		return err
	}
	sock := filepath.Join(dir, name+".sock")
	lock, err := lockName(dir, name, sock)
	if err != nil {
		return err
	}
	defer lock.release()

	prefix := "ustack daemon " + name
	sf.verbose = true // a daemon's stderr is its log
	st, err := sf.newStack(logTo(e, prefix))
	if err != nil {
		return err
	}
	defer closeStack(st, e)

	// We hold the name's lock, so a socket file here is a dead daemon's.
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the stale socket %s: %w", sock, err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // removed below, once, by us
	defer os.Remove(sock)
	defer ln.Close()
	if err := os.Chmod(sock, 0o600); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}

	var addrs []string
	for _, a := range st.Addrs() {
		addrs = append(addrs, a.String())
	}
	v, _ := versions()
	info := daemonInfo{Name: name, PID: os.Getpid(), Attachment: st.Attachment(), Addresses: addrs, MTU: st.MTU(), Socket: sock, Version: v}
	// Programs attached with 'ustack run --stack NAME' share one socket
	// manager, so they reach each other through the stack.
	mgr := sockets.New(st.Netstack(), logTo(e, prefix))
	defer mgr.Close()
	redirectNameservers(mgr, st)
	att := newAttacher(mgr, logTo(e, prefix))
	defer att.stop()
	d := &daemon{st: st, info: info, logf: logTo(e, prefix), conns: map[net.Conn]struct{}{}, attach: att}
	srv := &http.Server{
		Handler:           d,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          nil,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(&peerCheckListener{Listener: ln, logf: d.logf}) }()
	fmt.Fprintf(e.stdout, "%s: ready on %s (addresses %s)\n", prefix, sock, strings.Join(addrs, " "))

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("control socket: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	d.closeTunnels() // hijacked connections are not the server's to close
	fmt.Fprintf(e.stdout, "%s: stopped\n", prefix)
	return nil
}

// peerCheckListener accepts only connections from the daemon's own user
// (or root), by the kernel's SO_PEERCRED.
type peerCheckListener struct {
	net.Listener
	logf func(string, ...any)
}

func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == os.Getuid() || uid == 0) {
			return c, nil
		}
		if err != nil {
			l.logf("refused a control connection: reading its credentials: %v", err)
		} else if os.Getuid() == 0 {
			l.logf("refused a control connection from uid %d (only root may connect)", uid)
		} else {
			l.logf("refused a control connection from uid %d (only uid %d and root may connect)", uid, os.Getuid())
		}
		c.Close()
	}
}

func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// daemon serves the control API.
type daemon struct {
	st   *ustack.Stack
	info daemonInfo
	logf func(string, ...any)

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open CONNECT tunnels (both ends)

	attach *attacher // programs run with --stack
}

func (d *daemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		d.connect(w, r)
		return
	}
	switch r.URL.Path {
	case "/v1/info":
		if r.Method != http.MethodGet {
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(d.info)
	case "/v1/ping":
		d.ping(w, r)
	case "/v1/attach":
		d.attach.serveAttach(w, r)
	case "/v1/runtime":
		d.attach.serveRuntime(w, r, d.st)
	default:
		http.Error(w, "not found (endpoints: GET /v1/info, GET /v1/ping, POST /v1/attach, GET /v1/runtime, CONNECT host:port)", http.StatusNotFound)
	}
}

// connect dials r.Host through the stack and splices the raw streams.
func (d *daemon) connect(w http.ResponseWriter, r *http.Request) {
	target, err := d.st.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		target.Close()
		http.Error(w, "connection cannot be taken over", http.StatusInternalServerError)
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		target.Close()
		return
	}
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		target.Close()
		return
	}
	if !d.track(client, target) {
		return
	}
	go d.splice(client, brw.Reader, target)
}

// track registers a tunnel; false (and both closed) if the daemon is
// already shutting down.
func (d *daemon) track(conns ...net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		d.conns[c] = struct{}{}
	}
	return true
}

func (d *daemon) closeTunnels() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways; each direction's end is passed on as a
// half-close, so request-then-response protocols work.
func (d *daemon) splice(client net.Conn, clientBuf io.Reader, target net.Conn) {
	var wg sync.WaitGroup
	pipe := func(dst net.Conn, src io.Reader) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go pipe(target, clientBuf)
	go pipe(client, target)
	wg.Wait()
	client.Close()
	target.Close()
	d.mu.Lock()
	if d.conns != nil {
		delete(d.conns, client)
		delete(d.conns, target)
	}
	d.mu.Unlock()
}

// ping runs a ping on the daemon's stack and streams its lines.
func (d *daemon) ping(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	o := defaultPingOptions()
	host := q.Get("host")
	if host == "" {
		http.Error(w, "ping: missing host (use /v1/ping?host=H)", http.StatusBadRequest)
		return
	}
	for _, p := range []struct {
		key string
		set setter
	}{
		{"count", intValue{p: &o.count, min: 0, max: math.MaxInt32, what: "a number of requests"}},
		{"interval", durationValue{p: &o.interval, min: time.Millisecond}},
		{"timeout", durationValue{p: &o.timeout, min: time.Millisecond}},
		{"size", intValue{p: &o.size, min: 0, max: maxPingSize, what: "a payload size"}},
	} {
		if v := q.Get(p.key); v != "" {
			if err := p.set.Set(v); err != nil {
				http.Error(w, fmt.Sprintf("ping: %s: %v", p.key, err), http.StatusBadRequest)
				return
			}
		}
	}
	// Resolved before the answer starts, so that a bad host is an error
	// status the client reports, not a line in the output.
	dst, err := resolveHost(r.Context(), d.st, host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Trailer", pingReceivedTrailer)
	w.WriteHeader(http.StatusOK)
	stats, err := ping(r.Context(), d.st, host, dst, o, &flushWriter{w: w})
	if err != nil {
		fmt.Fprintf(w, "ustack: %v\n", err)
	}
	w.Header().Set(pingReceivedTrailer, strconv.Itoa(stats.received))
}

type setter interface{ Set(string) error }

// flushWriter sends each line as soon as it is written.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
