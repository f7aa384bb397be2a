package cli

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"

	"ustack"
	"ustack/control"
	"ustack/inspect"
	"ustack/observe"
)

// stackAPI is the control API of a stack that ustack daemon or ustack run
// serves: info, ping and CONNECT here, sockets and counters from inspect.
type stackAPI struct {
	srv    *control.Server
	st     *ustack.Stack
	target *inspect.Target
	info   control.Info
	logf   func(string, ...any)

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open CONNECT tunnels (both ends)
}

// newStackAPI mounts every endpoint of the control API on srv. programs is
// the sockets.Manager of ustack run (nil for a daemon).
func newStackAPI(srv *control.Server, st *ustack.Stack, command string, programs inspect.Programs, logf func(string, ...any)) *stackAPI {
	var addrs []string
	for _, a := range st.Addrs() {
		addrs = append(addrs, a.String())
	}
	v, _ := versions()
	a := &stackAPI{
		srv:    srv,
		st:     st,
		target: &inspect.Target{Name: srv.Name(), Stack: st, Programs: programs, ControlBlocks: st.TCPProbe()},
		info: control.Info{Name: srv.Name(), PID: os.Getpid(), Command: command, Attachment: st.Attachment(),
			Addresses: addrs, MTU: st.MTU(), Socket: srv.Path(), Version: v},
		logf:  logf,
		conns: map[net.Conn]struct{}{},
	}
	// Every endpoint of the control API is mounted here, one line each.
	srv.HandleFunc("GET /v1/info", a.serveInfo)
	srv.HandleFunc("GET /v1/ping", a.ping)
	srv.HandleConnect(http.HandlerFunc(a.connect))
	inspect.Mount(srv, a.target)
	(&observe.Server{Name: srv.Name(), Hub: st.TCPProbe(), Taps: map[string]*observe.Tap{"eth0": st.NICTap()}, Logf: logf}).Mount(srv)
	return a
}

func (a *stackAPI) serveInfo(w http.ResponseWriter, r *http.Request) {
	info := a.info
	info.Connections = inspect.CountConnections(a.st.Netstack())
	control.WriteJSON(w, info)
}

// serve answers requests until ctx ends.
func (a *stackAPI) serve(ctx context.Context) error { return a.srv.Serve(ctx) }

// close removes the socket, frees the name and closes open tunnels.
func (a *stackAPI) close() {
	a.srv.Close()
	a.closeTunnels() // hijacked connections are not the server's to close
}
