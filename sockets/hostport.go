package sockets

import (
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// PortHolder reserves a port for one socket bound to it, outside the
// stack (on --net host: with the host, so that the kernel gives the port
// to no one else and leaves its packets to the stack), and returns the
// function that gives the socket's hold back. Its error unwraps to the
// errno bind should fail with: EADDRINUSE when someone else has the port,
// EACCES when it may not be had.
type PortHolder func(proto tcpip.TransportProtocolNumber, port uint16) (release func(), err error)

// HoldPorts has every bind of a TCP or UDP socket to a fixed port, and
// every connection accepted on one, hold its port through hold until the
// socket is released. Call it before the manager serves a call.
func (m *Manager) HoldPorts(hold PortHolder) { m.holdPort = hold }

// holdFor takes the hold of a socket bound to addr, or answers with the
// errno bind fails with. Binds to port 0 (the stack picks one of its
// ephemeral ports, which it holds already) and to the stack's own
// loopback hold nothing.
func (s *socket) holdFor(addr tcpip.FullAddress) (func(), unix.Errno) {
	none := func() {}
	if s.m.holdPort == nil || addr.Port == 0 || (s.proto != tcp.ProtocolNumber && s.proto != udp.ProtocolNumber) {
		return none, 0
	}
	if ip, ok := netip.AddrFromSlice(addr.Addr.AsSlice()); ok && ip.Unmap().IsLoopback() {
		return none, 0
	}
	release, err := s.m.holdPort(s.proto, addr.Port)
	if err == nil {
		return release, 0
	}
	s.m.logf("bind to port %d: %v", addr.Port, err)
	switch {
	case errors.Is(err, unix.EACCES):
		return nil, unix.EACCES
	case errors.Is(err, unix.EADDRINUSE):
		return nil, unix.EADDRINUSE
	}
	// The port could not be had for another reason (a limit, the host's
	// port server gone): bind fails as for a port in use, and the log
	// says why.
	return nil, unix.EADDRINUSE
}

// holdAccepted takes a hold on the listener's port for a connection
// accepted on it, so that the port stays the stack's while the connection
// lives, as the kernel keeps a port busy while connections use it.
func (s *socket) holdAccepted(ep tcpip.Endpoint) {
	a, terr := ep.GetLocalAddress()
	if terr != nil {
		return
	}
	release, en := s.holdFor(a)
	if en != 0 {
		return
	}
	s.setHold(release)
}

// setHold records the socket's hold, released with the socket.
func (s *socket) setHold(release func()) {
	s.mu.Lock()
	s.release = release
	s.mu.Unlock()
}
