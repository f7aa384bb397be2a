package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Server serves the control API of one stack on its unix socket. Handlers
// are mounted with Handle before or while it serves.
type Server struct {
	name, path string
	logf       func(string, ...any)
	lock       *nameLock
	ln         net.Listener
	http       *http.Server

	mu       sync.Mutex
	mux      *http.ServeMux
	patterns []string
	connect  http.Handler
}

// Listen takes the name, replaces a socket a dead stack left behind and
// listens on DIR/NAME.sock (mode 0600). logf receives a line for every
// refused peer. The caller calls Serve, then Close.
func Listen(name string, logf func(string, ...any)) (*Server, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("%q is not a valid stack name (use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", name)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir := Dir()
	if err := makeDir(dir); err != nil {
		return nil, err
	}
	path := socketIn(dir, name)
	lock, err := lockName(dir, name, path)
	if err != nil {
		return nil, err
	}
	// We hold the name's lock, so a socket file here is a dead stack's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.release()
		return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	// The directory is owner-only, so the moment before the chmod below
	// exposes nothing.
	ln, err := net.Listen("unix", path)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // removed by Close, once, by us
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		lock.release()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &Server{name: name, path: path, logf: logf, lock: lock, ln: ln, mux: http.NewServeMux()}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

func socketIn(dir, name string) string { return dir + "/" + name + ".sock" }

// Name is the stack's name.
func (s *Server) Name() string { return s.name }

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Handle mounts h on pattern (http.ServeMux syntax, e.g. "GET /v1/info").
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mux.Handle(pattern, h)
	s.patterns = append(s.patterns, pattern)
}

// HandleFunc mounts f on pattern.
func (s *Server) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	s.Handle(pattern, http.HandlerFunc(f))
}

// HandleConnect mounts h for CONNECT requests, whose target is a host:port
// rather than a path.
func (s *Server) HandleConnect(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connect = h
	s.patterns = append(s.patterns, "CONNECT HOST:PORT")
}

// ServeHTTP routes CONNECT to its handler and the rest by path; an unknown
// path lists the endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	connect, mux := s.connect, s.mux
	s.mu.Unlock()
	if r.Method == http.MethodConnect {
		if connect == nil {
			http.Error(w, "CONNECT is not served by this stack", http.StatusMethodNotAllowed)
			return
		}
		connect.ServeHTTP(w, r)
		return
	}
	if _, pattern := mux.Handler(r); pattern == "" {
		s.mu.Lock()
		list := append([]string(nil), s.patterns...)
		s.mu.Unlock()
		sort.Strings(list)
		http.Error(w, fmt.Sprintf("%s %s: not found (endpoints: %s)", r.Method, r.URL.Path, strings.Join(list, ", ")), http.StatusNotFound)
		return
	}
	mux.ServeHTTP(w, r)
}

// Serve answers requests until ctx ends or Close is called; it returns nil
// then.
func (s *Server) Serve(ctx context.Context) error {
	s.http.BaseContext = func(net.Listener) context.Context { return ctx }
	stop := context.AfterFunc(ctx, func() { s.shutdown() })
	defer stop()
	err := s.http.Serve(&peerCheckListener{Listener: s.ln, logf: s.logf})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.http.Shutdown(ctx)
}

// Close stops serving, removes the socket and frees the name. Hijacked
// connections (CONNECT tunnels) are their handler's to close.
func (s *Server) Close() error {
	s.shutdown()
	s.ln.Close()
	err := os.Remove(s.path)
	s.lock.release()
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// WriteJSON answers with v as indented JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// peerCheckListener accepts only connections from the server's own user
// (or root), by the kernel's SO_PEERCRED; the socket's mode already keeps
// others out, this holds even if the mode or directory is loosened.
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
		cred, err := peerCred(c)
		if err == nil && (int(cred.Uid) == os.Getuid() || cred.Uid == 0) {
			return c, nil
		}
		switch {
		case err != nil:
			l.logf("refused a control connection: reading its credentials: %v", err)
		case os.Getuid() == 0:
			l.logf("refused a control connection from uid %d pid %d (only root may connect)", cred.Uid, cred.Pid)
		default:
			l.logf("refused a control connection from uid %d pid %d (only uid %d and root may connect)", cred.Uid, cred.Pid, os.Getuid())
		}
		c.Close()
	}
}

func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}
