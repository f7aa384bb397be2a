// Package inspect reads a running stack for the control API: its sockets
// (ss), its counters (stats, Prometheus /metrics). It turns netstack's
// endpoints and tcpip.Stats into the control API's types (package
// control/api) and mounts the handlers that serve them on a control server.
package inspect

import (
	"net/http"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
)

// Programs tells what ustack run knows of the program socket an endpoint
// serves: the owning process, the bytes the program wrote and TCP_INFO's
// bytes_received, which netstack does not count but the program's relay
// does. sockets.Manager implements it.
type Programs interface {
	Owner(ep tcpip.Endpoint) (pid int, comm string, ok bool)
	ByteCounts(ep tcpip.Endpoint) (written, received uint64, ok bool)
}

// ControlBlocks gives the latest TCP control block netstack's TCP probe
// sampled for a connection: what TCP_INFO does not tell (snd_una, snd_nxt,
// rcv_nxt, SACK state, windows). The returned state is a snapshot the
// caller must not change; false if the connection has no sample yet. The
// probe hub of package observe implements it.
type ControlBlocks interface {
	Latest(id stack.TransportEndpointID) (*tcp.TCPEndpointState, bool)
}

// Target is what the handlers need of a running stack. Programs and
// ControlBlocks are optional.
type Target struct {
	Name          string
	Stack         *ustack.Stack
	Programs      Programs
	ControlBlocks ControlBlocks
}

// Mount serves t's sockets and counters on srv.
func Mount(srv *control.Server, t *Target) {
	srv.HandleFunc("GET /v1/sockets", func(w http.ResponseWriter, r *http.Request) {
		info := r.URL.Query().Get("info")
		control.WriteJSON(w, api.SocketsReply{Name: t.Name, Sockets: Sockets(t, info == "1" || info == "true")})
	})
	srv.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, api.StatsReply{Name: t.Name, Counters: Counters(t)})
	})
	srv.Handle("GET /metrics", MetricsHandler(t))
}

// CountConnections counts the TCP endpoints that are neither listening nor
// closed: the lines ss prints without -a.
func CountConnections(ns *stack.Stack) int {
	n := 0
	for _, ep := range ns.RegisteredEndpoints() {
		if t, ok := ep.(*tcp.Endpoint); ok {
			switch tcp.EndpointState(t.State()) {
			case tcp.StateListen, tcp.StateClose, tcp.StateInitial, tcp.StateBound:
			default:
				n++
			}
		}
	}
	return n
}
