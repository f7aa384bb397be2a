package cli

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/inspect"
	"github.com/ustack/ustack/observe"
	"github.com/ustack/ustack/sockets"
)

// servedStack is what run and daemon both build: a stack, the socket
// manager that serves programs from it, and its control API.
type servedStack struct {
	*stackAPI
	mgr     *sockets.Manager
	metrics net.Listener // --metrics-addr; nil without it
}

// openServedStack takes the name and its control socket first, so that a
// second stack of a live name is refused before it builds a stack (and
// takes host ports); then --metrics-addr, then the stack. logf is the
// command's log, stackLogf the stack's.
func openServedStack(name, command string, sf *stackFlags, mf *metricsFlag, logf, stackLogf func(string, ...any)) (*servedStack, error) {
	srv, err := listenControl(name, logf)
	if err != nil {
		return nil, err
	}
	metricsLn, err := mf.listen()
	if err != nil {
		srv.Close()
		return nil, err
	}
	st, err := sf.newStack(stackLogf)
	if err != nil {
		srv.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
		return nil, err
	}
	mgr := sockets.New(st.Netstack(), st.TCPProbe().Latest, logf)
	redirectNameservers(mgr, st)
	return &servedStack{stackAPI: newStackAPI(srv, st, command, mgr, logf), mgr: mgr, metrics: metricsLn}, nil
}

// serveMetrics serves /metrics on --metrics-addr, if given, until ctx ends.
func (s *servedStack) serveMetrics(ctx context.Context) {
	serveMetrics(ctx, s.metrics, inspect.MetricsHandler(s.target), s.logf)
}

// close closes the API, then every program socket, then the stack.
func (s *servedStack) close(e *env) {
	s.stackAPI.close()
	s.mgr.Close()
	closeStack(s.st, e)
}

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
		info: control.Info{Name: srv.Name(), PID: os.Getpid(), Command: command, Attachment: st.Attachment().String(),
			Addresses: addrs, MTU: st.MTU(), Socket: srv.Path(), Version: v},
		logf:  logf,
		conns: map[net.Conn]struct{}{},
	}
	// Every endpoint of the control API is mounted here, one line each.
	srv.HandleFunc("GET /v1/info", a.serveInfo)
	srv.HandleFunc("GET /v1/ping", a.ping)
	srv.HandleConnect(http.HandlerFunc(a.connect))
	inspect.Mount(srv, a.target)
	(&observe.Server{Name: srv.Name(), Hub: st.TCPProbe(), Mirrors: map[string]*observe.Mirror{"eth0": st.FrameMirror()}, Logf: logf}).Mount(srv)
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
