// Package serve serves a stack on its control socket: it mounts every
// endpoint of the control API (info, sockets and counters, traces and
// captures, ping, the emulated link, CONNECT tunnels and, for a daemon,
// programs attached by other processes), serves the Prometheus metrics,
// and runs programs with their socket calls answered by the stack. ustack
// daemon and ustack run are built on it; it takes plain values, not flags.
package serve

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/inspect"
	"github.com/ustack/ustack/netview"
	"github.com/ustack/ustack/observe"
	"github.com/ustack/ustack/sockets"
)

// Config is what a served stack needs besides the stack and its control
// socket.
type Config struct {
	// Command is what GET /v1/info says the stack is: "daemon" or "run".
	Command string
	// Version is ustack's version, for GET /v1/info.
	Version string
	// Attach serves POST /v1/attach and GET /v1/runtime, so that programs
	// launched by other processes (ustack run --stack) join the stack.
	Attach bool
	// Metrics, if not nil, is a listener on which Serve also serves
	// GET /metrics, for a Prometheus server that cannot reach the socket.
	Metrics net.Listener
	// Logf receives the log: programs' refused sockets, attach trouble,
	// traces and captures ending (nil: discard).
	Logf func(format string, args ...any)
	// Links, if not nil, are the NICs GET and POST /v1/link reach, by
	// name, in place of the stack's own eth0: a lab node's interfaces.
	Links map[string]LinkDev
	// Rules, if not nil, are the verdicts of the stack's packet filter (a
	// lab router's rules), which GET /v1/trace records.
	Rules *observe.RuleFeed
}

// Stack is a stack served on its control socket, with the socket manager
// that answers the calls of its programs.
type Stack struct {
	srv     *control.Server
	st      *ustack.Stack
	mgr     *sockets.Manager
	target  *inspect.Target
	info    api.Info
	logf    func(string, ...any)
	metrics *metricsServer     // nil without Config.Metrics
	links   map[string]LinkDev // Config.Links
	att     *attacher          // nil without Config.Attach

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open CONNECT tunnels (both ends); nil once closed
}

// New serves st on srv. It takes both over: Close closes them. The caller
// makes srv with control.Listen before it builds st, so that a name in use
// is refused before the stack takes host ports.
func New(srv *control.Server, st *ustack.Stack, cfg Config) *Stack {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	mgr := sockets.New(st.Netstack(), st.TCPProbe().Latest, logf)
	// On --net host a program's bind takes its port from the host.
	mgr.HoldPorts(st.HoldPort)
	// Programs see the stack's interfaces, routes and sockets over netlink
	// and interface ioctls, and may change them (ip addr add...) as root
	// may in a network namespace: a program under run owns its stack, and
	// only the stack's owner can attach programs to a daemon.
	mgr.ServeNetwork(netview.New(st, mgr, st.TCPProbe().Latest))
	redirectNameservers(mgr, st)
	var addrs []string
	for _, a := range st.Addrs() {
		addrs = append(addrs, a.String())
	}
	s := &Stack{
		srv:    srv,
		st:     st,
		mgr:    mgr,
		target: &inspect.Target{Name: srv.Name(), Stack: st, Programs: mgr, ControlBlocks: st.TCPProbe()},
		info: api.Info{Name: srv.Name(), PID: os.Getpid(), Command: cfg.Command, Attachment: st.Attachment().String(),
			Addresses: addrs, MTU: st.MTU(), Socket: srv.Path(), Version: cfg.Version},
		logf:  logf,
		conns: map[net.Conn]struct{}{},
		links: cfg.Links,
	}
	if cfg.Metrics != nil {
		s.metrics = newMetricsServer(cfg.Metrics, inspect.MetricsHandler(s.target), logf)
	}

	// Every endpoint of the control API is mounted here, one line each.
	srv.HandleFunc("GET /v1/info", s.serveInfo)
	srv.HandleFunc("GET /v1/ping", s.servePing)
	srv.HandleFunc("GET "+api.LinkPath, s.serveLinks)
	srv.HandleFunc("POST "+api.LinkPath, s.serveSetLink)
	srv.HandleFunc("GET "+api.MutatePath, s.serveMutate)
	srv.HandleFunc("POST "+api.MutatePath, s.serveSetMutate)
	srv.HandleFunc("GET "+api.SysctlPath, s.serveSysctl)
	srv.HandleFunc("POST "+api.SysctlPath, s.serveSetSysctl)
	srv.HandleConnect(http.HandlerFunc(s.connect))
	inspect.Mount(srv, s.target)
	(&observe.Server{Name: srv.Name(), Hub: st.TCPProbe(), Mirrors: st.FrameMirrors(), Rules: cfg.Rules, Logf: logf}).Mount(srv)
	if cfg.Attach {
		// Programs attached by other processes share the one socket
		// manager, so they reach each other through the stack.
		s.att = newAttacher(mgr, "ustack "+cfg.Command+" "+srv.Name(), logf)
		srv.HandleFunc("POST "+api.AttachPath, s.att.serveAttach)
		srv.HandleFunc("GET /v1/runtime", s.serveRuntime)
	}
	return s
}

// Info is the stack's GET /v1/info, without the count of connections.
func (s *Stack) Info() api.Info { return s.info }

// Serve answers the control API, and serves the metrics if asked to,
// until ctx ends or the stack is closed.
func (s *Stack) Serve(ctx context.Context) error {
	if s.metrics != nil {
		s.metrics.start(ctx)
	}
	return s.srv.Serve(ctx)
}

// Close stops serving: it stops serving the attached programs (their
// sockets are gone: each one still running is killed at its next socket
// call, by the warden), removes the control socket, closes the open
// tunnels, every program socket and then the stack, whose error it
// returns.
func (s *Stack) Close() error {
	if s.att != nil {
		s.att.stop()
	}
	s.srv.Close()
	if s.metrics != nil {
		s.metrics.close()
	}
	s.closeTunnels() // hijacked connections are not the server's to close
	s.mgr.Close()
	return s.st.Close()
}

func (s *Stack) serveInfo(w http.ResponseWriter, r *http.Request) {
	info := s.info
	// Programs on the stack may have changed these (ip addr, ip link set).
	info.Addresses = nil
	for _, a := range s.st.Addrs() {
		info.Addresses = append(info.Addresses, a.String())
	}
	info.MTU = s.st.MTU()
	if why := s.st.LinkDown(); why != "" {
		info.Attachment += " (down: " + why + ")"
	}
	info.Connections = inspect.CountConnections(s.st.Netstack())
	control.WriteJSON(w, info)
}

// metricsServer serves GET /metrics on a listener of its own.
type metricsServer struct {
	ln   net.Listener
	srv  *http.Server
	logf func(string, ...any)
}

func newMetricsServer(ln net.Listener, h http.Handler, logf func(string, ...any)) *metricsServer {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return &metricsServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, logf: logf}
}

// start serves until ctx ends or close is called.
func (m *metricsServer) start(ctx context.Context) {
	context.AfterFunc(ctx, m.close)
	go func() {
		if err := m.srv.Serve(m.ln); err != nil && err != http.ErrServerClosed {
			m.logf("metrics on %s: %v", m.ln.Addr(), err)
		}
	}()
}

// close stops serving; the listener is closed even if start never ran.
func (m *metricsServer) close() {
	m.srv.Close()
	m.ln.Close()
}
