package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
)

// Client reaches a lab's control socket, and its nodes'.
type Client struct {
	Name string // the lab's
}

// NotUpError says that no lab of that name is running.
type NotUpError struct{ Name string }

func (e *NotUpError) Error() string {
	return fmt.Sprintf("no lab named %s is up (see: ustack lab ls)", e.Name)
}

// call sends method path with body (JSON, if not nil) to the control
// socket of stack name and decodes the JSON answer into out.
func call(ctx context.Context, name, method, path string, body, out any) error {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return control.DialSocket(ctx, control.SocketPath(name))
		},
		DisableKeepAlives: true,
	}}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ustack"+path, r)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &control.StatusError{Name: name, Code: resp.StatusCode, Message: strings.TrimSpace(string(msg))}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// notUp turns the error of a socket nobody serves into a NotUpError.
func (c *Client) notUp(err error) error {
	var nr *control.NotRunningError
	if errors.As(err, &nr) {
		return &NotUpError{Name: c.Name}
	}
	return err
}

// Status is GET /v1/lab.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := call(ctx, c.Name, http.MethodGet, StatusPath, nil, &st)
	return st, c.notUp(err)
}

// Node is GET /v1/lab/node of one of the lab's nodes.
func (c *Client) Node(ctx context.Context, node string) (NodeReply, error) {
	var r NodeReply
	err := call(ctx, NodeSocketName(c.Name, node), http.MethodGet, NodePath, nil, &r)
	var nr *control.NotRunningError
	if errors.As(err, &nr) {
		return r, fmt.Errorf("node %s of lab %s is not running (see: ustack lab ls %s)", node, c.Name, c.Name)
	}
	return r, err
}

// SetLink is POST /v1/link on a node: the spec for one direction of an
// interface ("egress", "ingress" or "both"), in force at once.
func (c *Client) SetLink(ctx context.Context, node string, req api.LinkRequest) (api.LinkReply, error) {
	var r api.LinkReply
	err := call(ctx, NodeSocketName(c.Name, node), http.MethodPost, api.LinkPath, req, &r)
	return r, err
}

// StartReplays starts the pcap links' replays of a lab brought up with
// them held.
func (c *Client) StartReplays(ctx context.Context) (Status, error) {
	var st Status
	if err := call(ctx, c.Name, http.MethodPost, ReplayPath, nil, &st); err != nil {
		return st, c.notUp(err)
	}
	return st, nil
}

// Down takes the lab down and waits until its process has exited, which
// is when the last of its files is gone.
func (c *Client) Down(ctx context.Context) (Status, error) {
	var st Status
	if err := call(ctx, c.Name, http.MethodPost, DownPath, nil, &st); err != nil {
		return st, c.notUp(err)
	}
	return st, waitExit(ctx, st.PID)
}

// List returns the status of every lab of this user that is up.
func List(ctx context.Context) ([]Status, error) {
	stacks, err := control.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []Status
	for _, s := range stacks {
		if s.Command != "lab" {
			continue
		}
		st, err := (&Client{Name: s.Name}).Status(ctx)
		if err != nil {
			continue // it went down meanwhile
		}
		out = append(out, st)
	}
	return out, nil
}

// waitExit waits for process pid to exit, by its pidfd.
func waitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("waiting for the lab process %d: %w", pid, err)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		timeout := int(time.Until(deadline) / time.Millisecond)
		if timeout <= 0 {
			return fmt.Errorf("the lab process %d has not exited", pid)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		if n > 0 {
			return nil
		}
	}
}
