package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/control/api"
)

// Info is the answer to GET /v1/info (api.Info), what List returns.
type Info = api.Info

// NotRunningError says that no stack answers on a socket.
type NotRunningError struct {
	Socket string
	Err    error
}

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("no stack is running on %s (start one with: ustack daemon --name NAME, or ustack run --name NAME PROG)", e.Socket)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// StatusError is an answer with a status other than the one asked for;
// Message is the stack's one-line reason.
type StatusError struct {
	Name    string // the stack's
	Code    int
	Message string
}

func (e *StatusError) Error() string { return e.Name + ": " + e.Message }

// DialSocket connects to the control socket at path, explaining the usual
// reasons it is not there. Every connection a Client makes is made here.
// Before it returns the connection, on which nothing has been sent yet, it
// checks that the socket's directory, the socket and the process serving
// it are the caller's user's or root's (see UntrustedError).
func DialSocket(ctx context.Context, path string) (net.Conn, error) {
	conn, err := dialChecked(ctx, path)
	if err == nil {
		return conn, nil
	}
	var ue *UntrustedError
	switch {
	case errors.As(err, &ue):
		return nil, err
	case isNotRunning(err):
		return nil, &NotRunningError{Socket: path, Err: err}
	}
	return nil, fmt.Errorf("connecting to %s: %w", path, err)
}

// Client talks to one stack's control socket. It holds no connection
// between requests.
type Client struct {
	Name, Socket string
	http         *http.Client
}

// Dial returns a client for the stack called name. It does not connect
// until a request is made.
func Dial(name string) *Client { return DialPath(name, SocketPath(name)) }

// DialPath returns a client for the control socket at path.
func DialPath(name, path string) *Client {
	c := &Client{Name: name, Socket: path}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
		// The stack is local; long streams (ping, trace) must not be cut.
		DisableKeepAlives: true,
	}}
	return c
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) { return DialSocket(ctx, c.Socket) }

// urlOf is the address of path on the control socket (the host part is
// ignored).
func urlOf(path string) string { return "http://ustack" + path }

// do sends a request without a body and returns the answer if its status
// is want; otherwise a StatusError with the stack's message.
func (c *Client) do(ctx context.Context, method, path string, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, urlOf(path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// net/http's `Get "URL":` says nothing the caller does not know.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		text := strings.TrimSpace(string(msg))
		if text == "" {
			text = resp.Status
		}
		return nil, &StatusError{Name: c.Name, Code: resp.StatusCode, Message: text}
	}
	return resp, nil
}

// Get fetches path and decodes its JSON answer into v. An answer other
// than 200 is a StatusError carrying the server's message.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: reading %s: %w", c.Name, path, err)
	}
	return nil
}

// Info asks the stack for GET /v1/info.
func (c *Client) Info(ctx context.Context) (api.Info, error) {
	var info api.Info
	err := c.Get(ctx, "/v1/info", &info)
	return info, err
}

// Stream starts a GET of path whose answer is read as it comes (trace,
// capture, ping). The caller reads and closes the body; ending ctx ends
// the stream. An answer other than 200 is a StatusError.
func (c *Client) Stream(ctx context.Context, path string) (*http.Response, error) {
	return c.do(ctx, http.MethodGet, path, http.StatusOK)
}

// Post sends a POST of path without a body and expects want.
func (c *Client) Post(ctx context.Context, path string, want int) error {
	resp, err := c.do(ctx, http.MethodPost, path, want)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Ping has the stack ping (GET /v1/ping) and copies ping's lines to out as
// they come. It returns the number of replies the stack received. A host
// the stack cannot resolve is a StatusError before any output.
func (c *Client) Ping(ctx context.Context, req api.PingRequest, out io.Writer) (received int, err error) {
	resp, err := c.Stream(ctx, req.Path())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%s: reading ping's output: %w", c.Name, err)
	}
	// The trailer is there once the body has been read to its end.
	n, _ := strconv.Atoi(resp.Trailer.Get(api.PingReceivedTrailer))
	return n, nil
}

// Connect has the stack open a TCP connection to address (CONNECT) and
// returns the stream, spliced to it. CloseWrite on the returned connection
// is passed on to the peer as a half-close. A connection the stack could
// not make is an error with the stack's reason.
func (c *Client) Connect(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	// The context bounds the handshake; afterwards the stream is the caller's.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: address}, Host: address, Header: http.Header{}}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("talking to the stack on %s: %w", c.Socket, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("talking to the stack on %s: %w", c.Socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		msg := strings.TrimSpace(string(body))
		if msg == "" {
			msg = resp.Status
		}
		return nil, errors.New(msg)
	}
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	conn.SetDeadline(time.Time{})
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn is a net.Conn whose first bytes may already sit in a
// bufio.Reader that read past the CONNECT response.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite passes a half-close on to the stack, which passes it on to
// the peer.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Attachment is a connection on which a program is handed to a stack that
// serves attaching (POST /v1/attach, then the program's seccomp listener
// by SCM_RIGHTS). The stack keeps the connection open while it serves the
// program, so its end says that the stack has stopped serving it.
type Attachment struct {
	c       *Client
	conn    *net.UnixConn
	br      *bufio.Reader
	lost    chan struct{} // closed if the stack hangs up while serving the program
	watched chan struct{} // closed when the watch of the connection ends
	closing atomic.Bool
}

// OpenAttach connects to the stack and asks it to take a program. The
// stack is checked (DialSocket) and has agreed before the caller launches
// the program, so that no program starts for a stack that is not there,
// not the user's, or does not take programs. Hand the listener next.
func (c *Client) OpenAttach(ctx context.Context) (*Attachment, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("the control socket %s is not a unix socket", c.Socket)
	}
	a := &Attachment{c: c, conn: uc, br: bufio.NewReader(uc)}
	stop := a.bound(ctx)
	defer stop()
	if _, err := io.WriteString(uc, "POST "+api.AttachPath+" HTTP/1.1\r\nHost: ustack\r\nContent-Length: 0\r\n\r\n"); err != nil {
		uc.Close()
		return nil, fmt.Errorf("talking to the stack on %s: %w", c.Socket, err)
	}
	resp, err := http.ReadResponse(a.br, nil)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("talking to the stack on %s: %w", c.Socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		uc.Close()
		return nil, fmt.Errorf("the stack on %s refused: %s", c.Socket, strings.TrimSpace(string(body)))
	}
	return a, nil
}

// bound limits the exchange to ctx and ten seconds; the returned function
// lifts the limit.
func (a *Attachment) bound(ctx context.Context) func() {
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	a.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { a.conn.SetDeadline(time.Now()) })
	return func() {
		stop()
		a.conn.SetDeadline(time.Time{})
	}
}

// Hand passes listener, the seccomp listener of the program just launched,
// to the stack, which serves the program's socket calls from then on. The
// stack holds its own copy of the fd after; the caller still closes
// listener.
func (a *Attachment) Hand(ctx context.Context, listener int) error {
	stop := a.bound(ctx)
	defer stop()
	if _, _, err := a.conn.WriteMsgUnix([]byte{0}, unix.UnixRights(listener), nil); err != nil {
		return fmt.Errorf("passing the program to the stack: %w", err)
	}
	line, err := a.br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("the stack did not confirm: %w", err)
	}
	line = strings.TrimSpace(line)
	if msg, bad := strings.CutPrefix(line, api.AttachError); bad {
		return fmt.Errorf("the stack cannot serve the program: %s", msg)
	}
	if line != api.AttachOK {
		return fmt.Errorf("the stack on %s answered %q to the program's handover", a.c.Socket, line)
	}
	a.lost, a.watched = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(a.watched)
		// The stack's one more line, if any, comes when it hangs up.
		line, _ := a.br.ReadString('\n')
		if strings.TrimSpace(line) != api.AttachDone && !a.closing.Load() {
			close(a.lost)
		}
	}()
	return nil
}

// Lost is closed if the stack stops serving the program handed over while
// the program runs: the stack exited or was killed. It stays open when
// the program and all it forked have exited, and blocks before Hand has
// succeeded.
func (a *Attachment) Lost() <-chan struct{} { return a.lost }

// Settled is closed once the stack has said how serving the program ended:
// it said done (the program and all it forked have exited), or it hung up
// without saying so (then Lost is closed first). It blocks before Hand has
// succeeded.
func (a *Attachment) Settled() <-chan struct{} { return a.watched }

// Close hangs up. The stack goes on serving a program handed over.
func (a *Attachment) Close() error {
	a.closing.Store(true)
	err := a.conn.Close()
	if a.watched != nil {
		<-a.watched
	}
	return err
}

// List returns the info of every live stack of this user, by name. Sockets
// of stacks that died (nobody listens and nobody holds the name's lock, as
// after a SIGKILL) are removed; a stack that does not answer within the
// context's time is left out but left alone. A directory, socket or stack
// that is not the user's is an *UntrustedError.
func List(ctx context.Context) ([]api.Info, error) {
	dir := Dir()
	// Only a directory of ours is read, and only there are dead sockets
	// removed.
	dfd, err := openDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/self/fd/%d", dfd))
	unix.Close(dfd)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var out []api.Info
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".sock")
		if !ok || !ValidName(name) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := DialPath(name, path).Info(qctx)
		cancel()
		if err == nil {
			out = append(out, info)
			continue
		}
		var nr *NotRunningError
		var ue *UntrustedError
		switch {
		case errors.As(err, &nr):
			removeIfDead(dir, name, path)
		case errors.As(err, &ue):
			return nil, err // an impostor is not left out quietly
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// removeIfDead removes a socket nobody answers on, if the name's lock is
// free: a starting stack holds the lock before it replaces the socket, so
// holding the lock ourselves means no stack owns the socket.
func removeIfDead(dir, name, path string) {
	f, _, err := tryLock(lockPath(dir, name))
	if err != nil || f == nil {
		return
	}
	l := &nameLock{f: f, path: lockPath(dir, name)}
	os.Remove(path)
	l.release()
}
