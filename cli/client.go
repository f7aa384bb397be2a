package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ustack/ustack/control"
)

// dialViaDaemon asks the daemon listening on sock for a TCP connection to
// address (HTTP CONNECT) and returns the spliced stream.
func dialViaDaemon(ctx context.Context, sock, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	conn, err := dialDaemon(ctx, sock)
	if err != nil {
		return nil, err
	}
	// The context bounds the handshake; afterwards the stream is the caller's.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: address}, Host: address, Header: http.Header{}}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("talking to the daemon on %s: %w", sock, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("talking to the daemon on %s: %w", sock, err)
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

// dialDaemon connects to a stack's control socket, explaining the usual
// reasons it is not there.
func dialDaemon(ctx context.Context, sock string) (net.Conn, error) {
	conn, err := control.DialSocket(ctx, sock)
	var nr *control.NotRunningError
	if errors.As(err, &nr) {
		return nil, fmt.Errorf("--stack: no daemon is running on %s (start one with: ustack daemon --name NAME)", sock)
	}
	if err != nil {
		return nil, fmt.Errorf("--stack: %w", err)
	}
	return conn, nil
}

// bufferedConn is a net.Conn whose first bytes may already sit in a
// bufio.Reader that read past the CONNECT response.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite passes a half-close on to the daemon, which passes it on to
// the peer.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// daemonHTTPClient talks HTTP to a daemon's control socket.
func daemonHTTPClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dialDaemon(ctx, sock) },
		// The daemon is local; a streamed ping may run for long.
		DisableKeepAlives: true,
	}}
}
