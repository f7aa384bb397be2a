package control

import (
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
	"strings"
	"syscall"
	"time"
)

// Info is the answer to GET /v1/info.
type Info struct {
	Name       string   `json:"name"`
	PID        int      `json:"pid"`
	Command    string   `json:"command"` // "daemon" or "run"
	Attachment string   `json:"attachment"`
	Addresses  []string `json:"addresses"`
	MTU        int      `json:"mtu"`
	Socket     string   `json:"socket"`
	Version    string   `json:"version"`
	// Connections counts the stack's TCP connections that are neither
	// listening nor closed (what ss shows without -a).
	Connections int `json:"connections"`
}

// NotRunningError says that no stack answers on a socket.
type NotRunningError struct {
	Socket string
	Err    error
}

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("no stack is running on %s (start one with: ustack daemon --name NAME, or ustack run --name NAME PROG)", e.Socket)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// DialSocket connects to the control socket at path, explaining the usual
// reasons it is not there.
func DialSocket(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		return conn, nil
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, &NotRunningError{Socket: path, Err: err}
	}
	return nil, fmt.Errorf("connecting to %s: %w", path, err)
}

// Client talks HTTP to one stack's control socket.
type Client struct {
	Name, Socket string
	HTTP         *http.Client
}

// Dial returns a client for the stack called name. It does not connect
// until a request is made.
func Dial(name string) *Client { return DialPath(name, SocketPath(name)) }

// DialPath returns a client for the control socket at path.
func DialPath(name, path string) *Client {
	return &Client{Name: name, Socket: path, HTTP: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return DialSocket(ctx, path) },
		// The stack is local; long streams (ping) must not be cut.
		DisableKeepAlives: true,
	}}}
}

// URL is the address of path on the control socket (the host part is
// ignored).
func URL(path string) string { return "http://ustack" + path }

// Get fetches path and decodes its JSON answer into v. An answer other
// than 200 is an error carrying the server's message.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, URL(path), nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", c.Name, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: reading %s: %w", c.Name, path, err)
	}
	return nil
}

// Info asks the stack for GET /v1/info.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	err := c.Get(ctx, "/v1/info", &info)
	return info, err
}

// List returns the info of every live stack of this user, by name. Sockets
// of stacks that died (nobody listens and nobody holds the name's lock, as
// after a SIGKILL) are removed; a stack that does not answer within the
// context's time is left out but left alone.
func List(ctx context.Context) ([]Info, error) {
	dir := Dir()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var out []Info
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
		if errors.As(err, &nr) {
			removeIfDead(dir, name, path)
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
