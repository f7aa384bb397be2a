// Package hostshare holds a user-level stack's share of a host interface:
// the stack uses the interface's IP addresses and MAC along with the host
// kernel and owns some of its ports. A port is the stack's through three
// things, set up in this order and released in the reverse one:
//
//  1. it is reserved on the host (hostports.Reservation: a bound socket
//     per shared address that never listens), so the kernel gives it to no
//     one else;
//  2. it is in the share's nftables table (hostports.Firewall), so the
//     kernel drops its packets in its input path instead of answering them;
//  3. the filter of the share's AF_PACKET socket admits it, so the stack
//     sees its packets.
//
// Each step stands on the one before: the kernel is told to ignore only a
// port nobody else of the host can hold, and the stack sees only a port
// the kernel ignores. Root host mode (package ustack) and every session of
// ustack portd hold their shares through this package.
package hostshare

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/link"
)

// Port is one port of one protocol.
type Port struct {
	Proto hostports.Proto
	Port  uint16
}

func (p Port) String() string { return fmt.Sprintf("%s port %d", p.Proto, p.Port) }

// Config is the share to hold.
type Config struct {
	// Iface is the host interface.
	Iface string
	// Addrs are the interface's addresses the stack shares: its ports are
	// reserved on each, and the firewall drops only packets to them.
	Addrs []netip.Addr
	// Ephemeral is the size of the block of ports, from the host's
	// ephemeral range, held for outgoing connections (TCP and UDP alike);
	// 0 holds none.
	Ephemeral int
	// Ports are the fixed ports held from the start.
	Ports []Port
	// Table names the share's nftables table: hostports.StackTable() (the
	// default) for a stack of its own, hostports.PortdTable for a session
	// of ustack portd.
	Table string
}

// Step is a part of setting up a share or adding a port to it.
type Step int

const (
	StepStale     Step = iota // removing the tables of ustack processes that are gone
	StepEphemeral             // reserving the ephemeral block
	StepPort                  // reserving a fixed port on the host
	StepFirewall              // installing the nftables table or changing its sets
	StepFilter                // opening the packet socket or changing its filter
)

// Error is a failure of one step. Its message is the failure's own:
// callers word it for their users (a flag, a refusal) by Step and Port.
// It unwraps to the failure, so hostports.IsInUse and NeedsPrivilege see
// through it.
type Error struct {
	Step Step
	Port Port // the port being reserved, if any
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// NeedsPrivilege reports whether err says the caller may not change the
// host's firewall (CAP_NET_ADMIN) or open packet sockets (CAP_NET_RAW).
func NeedsPrivilege(err error) bool {
	return errors.Is(err, hostports.ErrNotPermitted) || errors.Is(err, link.ErrNeedPrivilege)
}

// ErrClosed is returned by Reserve after Close.
var ErrClosed = errors.New("the host share is closed")

// Share is a held share of a host interface. Reserve, Release and Close
// may be called from any goroutine while the share's packet socket is in
// use.
type Share struct {
	iface      string
	addrs      []netip.Addr
	table      string
	ephemFirst uint16
	ephemCount int

	// mu orders the changes to the ports (Reserve, Release) and Close, so
	// that the three layers always agree once a call returns.
	mu     sync.Mutex
	ports  *hostports.Reservation
	fw     *hostports.Firewall
	pkt    *link.PacketSocket
	closed bool
}

// Open holds a share: it removes the tables of ustack processes that no
// longer exist, reserves the ephemeral block and cfg.Ports on the host,
// installs the table with them and opens the packet socket whose filter
// admits them. On error nothing is left held.
func Open(cfg Config) (*Share, error) {
	s := &Share{iface: cfg.Iface, addrs: cfg.Addrs, table: cfg.Table, ports: hostports.NewReservation(cfg.Addrs)}
	if s.table == "" {
		s.table = hostports.StackTable()
	}
	fail := func(step Step, p Port, err error) (*Share, error) {
		s.Close()
		return nil, &Error{Step: step, Port: p, Err: err}
	}
	if _, err := hostports.RemoveStale(); err != nil {
		return fail(StepStale, Port{}, err)
	}
	if cfg.Ephemeral > 0 {
		first, err := s.ports.ReserveBlock(cfg.Ephemeral)
		if err != nil {
			return fail(StepEphemeral, Port{}, err)
		}
		s.ephemFirst, s.ephemCount = first, cfg.Ephemeral
	}
	for _, p := range cfg.Ports {
		if err := s.ports.Reserve(p.Proto, p.Port); err != nil {
			return fail(StepPort, p, err)
		}
	}
	fw, err := hostports.NewFirewallTable(s.table, cfg.Iface, cfg.Addrs)
	if err != nil {
		return fail(StepFirewall, Port{}, err)
	}
	s.fw = fw
	for _, proto := range []hostports.Proto{hostports.TCP, hostports.UDP} {
		if err := s.fw.Add(proto, s.ports.Ports(proto)...); err != nil {
			return fail(StepFirewall, Port{}, err)
		}
	}
	if s.pkt, err = link.OpenPacket(cfg.Iface, s.filterSpec(nil)); err != nil {
		return fail(StepFilter, Port{}, err)
	}
	return s, nil
}

// Spec is the share's grant: its addresses and held ports. The packet
// socket's filter admits exactly this, and ustack portd checks its
// clients' frames against it.
func (s *Share) Spec() link.FilterSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filterSpec(nil)
}

// SpecWithout is Spec less p: the grant once p is released, for a check
// that must stop admitting p before Release gives it back to the host.
func (s *Share) SpecWithout(p Port) link.FilterSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filterSpec(&p)
}

// filterSpec is the grant for the held ports, but for except.
func (s *Share) filterSpec(except *Port) link.FilterSpec {
	spec := link.FilterSpec{TCP: s.Ports(hostports.TCP), UDP: s.Ports(hostports.UDP)}
	for _, a := range s.addrs {
		if a.Is4() {
			spec.IPv4 = append(spec.IPv4, a)
		} else {
			spec.IPv6 = append(spec.IPv6, a)
		}
	}
	if except != nil {
		drop := func(ps []uint16) []uint16 {
			return slices.DeleteFunc(ps, func(p uint16) bool { return p == except.Port })
		}
		if except.Proto == hostports.UDP {
			spec.UDP = drop(spec.UDP)
		} else {
			spec.TCP = drop(spec.TCP)
		}
	}
	return spec
}

// Reserve makes p the stack's while the share is open: held on the host,
// dropped by the kernel's input, admitted by the packet filter. A port the
// host already uses gives an *Error of StepPort that hostports.IsInUse
// recognises (EADDRINUSE, as the kernel's bind). Reserving a held port
// again does nothing. If a later step fails, the earlier ones are undone.
func (s *Share) Reserve(p Port) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.ports.Has(p.Proto, p.Port) {
		return nil
	}
	if err := s.ports.Reserve(p.Proto, p.Port); err != nil {
		return &Error{Step: StepPort, Port: p, Err: err}
	}
	if err := s.fw.Add(p.Proto, p.Port); err != nil {
		s.ports.Release(p.Proto, p.Port)
		return &Error{Step: StepFirewall, Port: p, Err: err}
	}
	if err := s.pkt.SetFilter(s.filterSpec(nil)); err != nil {
		s.fw.Remove(p.Proto, p.Port)
		s.ports.Release(p.Proto, p.Port)
		return &Error{Step: StepFilter, Port: p, Err: err}
	}
	return nil
}

// Release gives p back to the host, undoing Reserve in the reverse order:
// the packet filter stops admitting it, the kernel answers for it again,
// and the host may hand it out. Releasing a port not held does nothing; a
// port of the ephemeral block is held until Close.
func (s *Share) Release(p Port) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.ports.Has(p.Proto, p.Port) {
		return nil
	}
	if s.inEphemeral(p.Port) {
		return fmt.Errorf("%s is in the ephemeral block %d-%d, held until the share closes", p, s.ephemFirst, int(s.ephemFirst)+s.ephemCount-1)
	}
	if err := s.pkt.SetFilter(s.filterSpec(&p)); err != nil {
		return &Error{Step: StepFilter, Port: p, Err: err}
	}
	if err := s.fw.Remove(p.Proto, p.Port); err != nil {
		// Still held and dropped: let the stack see it again.
		s.pkt.SetFilter(s.filterSpec(nil))
		return &Error{Step: StepFirewall, Port: p, Err: err}
	}
	s.ports.Release(p.Proto, p.Port)
	return nil
}

func (s *Share) inEphemeral(port uint16) bool {
	return s.ephemCount > 0 && port >= s.ephemFirst && int(port) < int(s.ephemFirst)+s.ephemCount
}

// Has reports whether the share holds p.
func (s *Share) Has(p Port) bool { return s.ports.Has(p.Proto, p.Port) }

// Ports returns the held ports of proto, the ephemeral block included,
// sorted.
func (s *Share) Ports(proto hostports.Proto) []uint16 {
	ps := s.ports.Ports(proto)
	slices.Sort(ps)
	return ps
}

// Ephemeral returns the block held for outgoing connections: its first
// port and its size (0 if none).
func (s *Share) Ephemeral() (first uint16, n int) { return s.ephemFirst, s.ephemCount }

// Iface is the shared interface's name.
func (s *Share) Iface() string { return s.iface }

// Table is the name of the share's nftables table.
func (s *Share) Table() string { return s.table }

// Packet is the share's packet socket, which carries the stack's frames.
// The share owns it: Close closes it.
func (s *Share) Packet() *link.PacketSocket { return s.pkt }

// Close releases the share in the reverse order of Open: the packet
// socket, the table, then the ports. A caller that reads the packet
// socket (through a duplicate of its descriptor, say) stops first.
func (s *Share) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.pkt != nil {
		errs = append(errs, s.pkt.Close())
	}
	if s.fw != nil {
		errs = append(errs, s.fw.Close())
	}
	errs = append(errs, s.ports.Close())
	return errors.Join(errs...)
}
