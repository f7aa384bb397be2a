// Package portd is the client of ustack portd, the port server, and the
// protocol between them. The server (package portd/server, run as root by
// the ustack portd command) lets users who may not open packet sockets or
// touch the firewall put a stack on --net host:IFACE: for each client it
// holds a share of the interface (package hostshare: the host ports the
// policy grants, an nftables table that keeps the kernel off them, a
// filtered AF_PACKET socket) and carries the client's frames between a
// SOCK_SEQPACKET socket and that packet socket, checking that every frame
// the client sends comes from the interface's MAC, the shared addresses
// and a port the client holds. A program with a stack links this package
// only, never the server.
//
// The protocol runs over a unix SOCK_SEQPACKET socket, one JSON message per
// packet. Who the client is comes from the socket (SO_PEERCRED and
// SO_PEERGROUPS), never from a message. A connection holds at most one
// session; when it closes (the client exited or was killed) the session's
// ports, table and sockets are released.
package portd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/ustack/ustack/hostports"
)

// DefaultSocket is where portd listens and clients look for it. Its
// directory is portd's own and searchable by everyone: not the control
// socket directory of root's stacks (/run/ustack, see control.Dir), which
// a root stack makes owner-only and where a root stack called "portd"
// would replace the socket.
const DefaultSocket = "/run/ustack-portd/portd.sock"

// Port is one port of one protocol.
type Port struct {
	Proto hostports.Proto `json:"proto"`
	Port  uint16          `json:"port"`
}

func (p Port) String() string { return fmt.Sprintf("%s port %d", p.Proto, p.Port) }

// Request is a client's message; Op says which.
type Request struct {
	Op        string       `json:"op"`
	Iface     string       `json:"iface,omitempty"`
	Addrs     []netip.Addr `json:"addrs,omitempty"`
	Ephemeral int          `json:"ephemeral,omitempty"`
	Ports     []Port       `json:"ports,omitempty"`
}

// The requests.
const (
	OpOpen    = "open"    // start the session: Iface, Addrs, Ephemeral, Ports
	OpReserve = "reserve" // hold more ports: Ports
	OpRelease = "release" // give back ports held by reserve: Ports
	OpStatus  = "status"  // list the sessions: root's request all, a user's their own
)

// Reply is the server's answer; an open reply carries the client's end of
// the frame socket as SCM_RIGHTS.
type Reply struct {
	Error   string       `json:"error,omitempty"`
	Code    string       `json:"code,omitempty"`
	Session *SessionInfo `json:"session,omitempty"`
	Holders []Holder     `json:"holders,omitempty"`
}

// SessionInfo describes an open session to its client.
type SessionInfo struct {
	ID    uint64       `json:"id"`
	Iface string       `json:"iface"`
	MAC   string       `json:"mac"`
	MTU   int          `json:"mtu"`
	Addrs []netip.Addr `json:"addrs"`
	// EphemeralFirst and EphemeralCount are the block reserved for
	// outgoing connections (TCP and UDP).
	EphemeralFirst uint16 `json:"ephemeral_first"`
	EphemeralCount int    `json:"ephemeral_count"`
	Table          string `json:"table"`
}

// Holder is one session as status shows it.
type Holder struct {
	ID       uint64       `json:"id"`
	UID      uint32       `json:"uid"`
	User     string       `json:"user"`
	PID      int32        `json:"pid"`
	Iface    string       `json:"iface"`
	Addrs    []netip.Addr `json:"addrs"`
	TCP      []uint16     `json:"tcp"`
	UDP      []uint16     `json:"udp"`
	Table    string       `json:"table"`
	Sent     uint64       `json:"frames_sent"`
	Refused  uint64       `json:"frames_refused"`
	Received uint64       `json:"frames_received"`
}

// Refusal codes.
const (
	CodeDenied     = "denied"      // the policy does not grant it
	CodeInUse      = "in-use"      // another client or the host holds it
	CodeBadRequest = "bad-request" // malformed or impossible request
	CodeLimit      = "limit"       // over a limit of the policy or of portd
)

// RefusedError is a request portd refused. It unwraps to EACCES for a
// policy refusal, EADDRINUSE for a port someone else holds and EAGAIN for
// a limit (it may pass once other sessions end), so callers can treat it
// like the kernel's answer to bind.
type RefusedError struct {
	Code string
	Msg  string
}

func (e *RefusedError) Error() string { return "ustack portd refused: " + e.Msg }

func (e *RefusedError) Unwrap() error {
	switch e.Code {
	case CodeDenied:
		return syscall.EACCES
	case CodeInUse:
		return syscall.EADDRINUSE
	case CodeLimit:
		return syscall.EAGAIN
	}
	return nil
}

// ErrNotRunning is wrapped when nothing serves the portd socket.
var ErrNotRunning = errors.New("ustack portd is not running")

// NotRunningFix is the one-line fix for ErrNotRunning.
const NotRunningFix = "start it: sudo systemctl start ustack-portd, or sudo ustack portd"

func dialErr(path string, err error) error {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w at %s (%s)", ErrNotRunning, path, NotRunningFix)
	}
	var op *net.OpError
	if errors.As(err, &op) {
		err = op.Err
	}
	return fmt.Errorf("ustack portd at %s: %w", path, err)
}
