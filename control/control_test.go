package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// serve starts a server called name in a fresh XDG_RUNTIME_DIR with
// /v1/info and an echo endpoint mounted.
func serve(t *testing.T, name string) (*Server, *logBuffer) {
	t.Helper()
	log := &logBuffer{}
	srv, err := Listen(name, log.logf)
	if err != nil {
		t.Fatal(err)
	}
	srv.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, Info{Name: name, PID: os.Getpid(), Socket: srv.Path()})
	})
	srv.HandleFunc("GET /v1/echo", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Query().Get("say"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	return srv, log
}

func TestServeAndList(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	srv, _ := serve(t, "one")
	if want := filepath.Join(dir, "ustack", "one.sock"); srv.Path() != want || SocketPath("one") != want {
		t.Fatalf("socket %s (SocketPath %s), want %s", srv.Path(), SocketPath("one"), want)
	}
	fi, err := os.Stat(srv.Path())
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, mode %v; want a socket with 0600", err, fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(srv.Path())); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v, mode %v; want 0700", err, di.Mode())
	}

	c := Dial("one")
	resp, err := c.http.Get(urlOf("/v1/echo?say=hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Errorf("echo: %q", body)
	}
	// An unknown path lists the endpoints.
	resp, err = c.http.Get(urlOf("/v1/nothing"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "GET /v1/echo") {
		t.Errorf("unknown path: %d %q", resp.StatusCode, body)
	}

	// The name is taken while the server lives.
	_, err = Listen("one", nil)
	var taken *NameTakenError
	if !errors.As(err, &taken) || taken.PID != os.Getpid() {
		t.Errorf("second Listen: %v, want a NameTakenError with our pid", err)
	}

	list, err := List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "one" || list[0].PID != os.Getpid() {
		t.Errorf("List: %+v", list)
	}
}

func TestCloseRemovesSocketAndFreesName(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	srv, err := Listen("two", nil)
	if err != nil {
		t.Fatal(err)
	}
	path := srv.Path()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v", err)
	}
	srv, err = Listen("two", nil)
	if err != nil {
		t.Fatalf("the name was not freed: %v", err)
	}
	srv.Close()
	_, err = Dial("two").Info(context.Background())
	var nr *NotRunningError
	if !errors.As(err, &nr) {
		t.Errorf("Info of a closed stack: %v, want NotRunningError", err)
	}
}

func TestBadName(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	for _, name := range []string{"", "../x", "a/b", "-x", strings.Repeat("a", 65)} {
		if _, err := Listen(name, nil); err == nil {
			t.Errorf("Listen(%q) succeeded", name)
		}
	}
}

// A socket whose stack died without cleaning up (SIGKILL: no lock held,
// nobody listening) is removed by List; one whose name is still locked is
// left alone.
func TestListRemovesDeadSockets(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	if err := makeDir(Dir()); err != nil {
		t.Fatal(err)
	}
	deadSocket := func(name string) string {
		path := SocketPath(name)
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		return path
	}
	dead := deadSocket("dead")
	os.WriteFile(lockPath(Dir(), "dead"), []byte("999999\n"), 0o600) // a lock file nobody holds
	starting := deadSocket("starting")
	lock, err := lockName(Dir(), "starting", starting) // a stack between lock and listen
	if err != nil {
		t.Fatal(err)
	}
	defer lock.release()
	serve(t, "alive")

	list, err := List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "alive" {
		t.Errorf("List: %+v, want only alive", list)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead socket still there: %v", err)
	}
	if _, err := os.Stat(lockPath(Dir(), "dead")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead lock file still there: %v", err)
	}
	if _, err := os.Stat(starting); err != nil {
		t.Errorf("the socket of a locked name was removed: %v", err)
	}
}

// A peer of another user is refused by its credentials and logged, even
// when the socket's permissions would let it in.
func TestRefusesOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	curl := testprog.Need(t, "curl")
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	srv, log := serve(t, "guarded")
	// Open the way for nobody, so that only the credential check stands.
	for _, p := range []string{filepath.Dir(dir), dir, filepath.Dir(srv.Path())} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(srv.Path(), 0o666); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	run := func(uid uint32) (string, error) {
		cmd := exec.Command(curl, "-sS", "--max-time", "10", "--unix-socket", srv.Path(), "http://ustack/v1/echo?say=hi")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(nobody)
	if err == nil || strings.Contains(out, "hi") {
		t.Errorf("nobody got an answer: %q, %v", out, err)
	}
	refused := fmt.Sprintf("refused a control connection from uid %d", nobody)
	testwait.ForNil(t, "the log line for the refused peer", func() error {
		if l := log.String(); !strings.Contains(l, refused) {
			return fmt.Errorf("curl said %q; log: %q", out, l)
		}
		return nil
	})
	// Root is let in.
	if out, err := run(0); err != nil || out != "hi" {
		t.Errorf("root: %q, %v", out, err)
	}
}

// TestClientStatus: answers other than the one asked for are a StatusError
// with the stack's name, status and message; Stream hands over the body.
func TestClientStatus(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	srv, _ := serve(t, "three")
	srv.HandleFunc("POST /v1/done", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	c := Dial("three")
	ctx := context.Background()

	var v any
	err := c.Get(ctx, "/v1/nothing", &v)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound || se.Name != "three" || !strings.Contains(se.Message, "GET /v1/echo") ||
		!strings.HasPrefix(err.Error(), "three: ") {
		t.Errorf("Get of an unknown path: %v", err)
	}
	if err := c.Post(ctx, "/v1/done", http.StatusNoContent); err != nil {
		t.Errorf("Post: %v", err)
	}
	if err := c.Post(ctx, "/v1/done", http.StatusOK); !errors.As(err, &se) || se.Code != http.StatusNoContent {
		t.Errorf("Post expecting 200: %v", err)
	}
	resp, err := c.Stream(ctx, "/v1/echo?say=streamed")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "streamed" {
		t.Errorf("Stream: %q", body)
	}
}
