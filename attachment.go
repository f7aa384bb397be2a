package ustack

import (
	"fmt"
	"net/netip"
	"reflect"
)

// Attachment is what connects a stack to the world: NAT, Tap, Host or
// Switch in Config.Net, and Pair for the stacks NewPair builds. Each is a
// type of this package that builds its own stack, so a new kind of
// attachment is a new type; the set is closed to other packages. String
// gives the form the command line's --net takes ("nat", "tap:t0",
// "host:eth0", "switch:lan").
type Attachment interface {
	String() string
	// attach builds a stack on the attachment from cfg, whose Net it is.
	attach(cfg Config) (*Stack, error)
}

// NAT is the unprivileged attachment, after slirp: the stack's connections
// end in a gateway that carries them over ordinary host sockets. The
// gateway (10.0.2.2 by default) reaches the host's loopback and the DNS
// address (10.0.2.3) forwards to the host's resolvers.
type NAT struct {
	// NoHostLoopback stops the gateway address from reaching the host's
	// loopback interface.
	NoHostLoopback bool
	// DNSUpstreams are the resolvers the DNS address forwards to; empty
	// means the host's, from /etc/resolv.conf.
	DNSUpstreams []netip.AddrPort
	// Publish lists host ports forwarded to listeners on the stack.
	Publish []PortMapping
}

func (NAT) String() string { return "nat" }

func (n NAT) attach(cfg Config) (*Stack, error) {
	if cfg.BusyPoll > 0 {
		return nil, configErr("BusyPoll", "applies to the tap and host attachments only: nat reads no device (leave --busy-poll out)")
	}
	return newNAT(cfg, n)
}

// Tap attaches the stack to a TAP device: it has its own MAC and the
// addresses of Config.Addrs (required), and the host sees it as a machine
// on the device's link.
type Tap struct {
	// Name is the device. One that exists must belong to the caller (ip
	// tuntap add NAME mode tap user $USER).
	Name string
	// Create makes the device when it does not exist (CAP_NET_ADMIN); the
	// stack removes it again on Close.
	Create bool
}

func (t Tap) String() string {
	if t.Create {
		return "tap:" + t.Name + ",create"
	}
	return "tap:" + t.Name
}

func (t Tap) attach(cfg Config) (*Stack, error) { return newTap(cfg, t) }

// Host attaches the stack to a host interface whose addresses and MAC it
// shares with the host kernel; the two are told apart by port. The stack
// needs CAP_NET_RAW and CAP_NET_ADMIN, or goes through ustack portd.
// Config.Addrs defaults to the interface's addresses and Config.Gateways to
// the host's default routes through it.
type Host struct {
	// Iface is the interface, e.g. "eth0".
	Iface string
	// Ports are reserved on the host at start for the stack's listeners
	// (--host-port). The Go API's Listen and ListenPacket reserve a port
	// they are given when it is not reserved yet; other programs on the
	// stack can bind only reserved ports.
	Ports []HostPort
	// EphemeralPorts is the size of the block of host ports reserved for
	// the stack's outgoing connections and port-0 binds; 0 means 64
	// (--net host:IFACE,ephemeral=N). A connection closed first by the
	// stack keeps its port in TIME-WAIT, and a new connection to the same
	// server takes such a port only after a second, so a loop of connects
	// to one server runs at most this many per second.
	EphemeralPorts int
	// Portd is the socket of ustack portd (--portd). A stack run by a user
	// other than root always goes through portd, at portd.DefaultSocket
	// (/run/ustack-portd/portd.sock) unless Portd names another; root goes
	// through portd only when Portd is set.
	Portd string
}

func (h Host) String() string {
	if h.EphemeralPorts != 0 {
		return fmt.Sprintf("host:%s,ephemeral=%d", h.Iface, h.EphemeralPorts)
	}
	return "host:" + h.Iface
}

func (h Host) attach(cfg Config) (*Stack, error) { return newHost(cfg, h) }

// Pair is the attachment of the two stacks NewPair joins by an in-memory
// link. New refuses it: a pair is built whole, both ends at once.
type Pair struct{}

func (Pair) String() string { return "pair" }

func (Pair) attach(Config) (*Stack, error) {
	return nil, configErr("Net", "a pair is built with NewPair, which makes both ends")
}

// nilAttachment reports a typed nil pointer in Config.Net (a nil *Tap,
// say), whose methods would otherwise panic.
func nilAttachment(a Attachment) bool {
	v := reflect.ValueOf(a)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
