package link

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// packetBufSize is the socket buffer each way: the kernel's default of
// ~208 KiB drops frames under load (runsc uses the same 4 MiB).
const packetBufSize = 4 << 20

// PacketSocket is an AF_PACKET socket on a host interface whose IP
// addresses and MAC the stack shares with the host kernel. A BPF filter
// admits only the stack's own traffic (see BuildFilter).
type PacketSocket struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	MTU   int

	mu sync.Mutex
	fd int
}

// ErrNeedPrivilege is wrapped by OpenPacket when the caller may not open
// packet sockets (CAP_NET_RAW).
var ErrNeedPrivilege = errors.New("not permitted")

// OpenPacket opens a packet socket on the interface name, with the filter
// for spec in place before the first frame can arrive. Frames carry a
// virtio-net header (PACKET_VNET_HDR) so that the kernel segments the
// stack's TCP super-frames (host GSO) and hands it the super-frames its
// GRO built.
func OpenPacket(name string, spec FilterSpec) (*PacketSocket, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("%s: not an Ethernet interface (hardware address %q)", name, ifi.HardwareAddr)
	}
	prog, err := BuildFilter(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// Protocol 0: the socket receives nothing until bind names the
	// protocol, so no frame slips in before the filter is attached.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%s: opening a packet socket: %w (%w)", name, ErrNeedPrivilege, err)
		}
		return nil, fmt.Errorf("%s: opening a packet socket: %w", name, err)
	}
	p := &PacketSocket{Name: name, Index: ifi.Index, MAC: ifi.HardwareAddr, MTU: ifi.MTU, fd: fd}
	for _, o := range []struct {
		what           string
		level, opt, on int
	}{
		{"PACKET_VNET_HDR", unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1},
		// The host kernel's own outgoing frames are not for the stack.
		{"PACKET_IGNORE_OUTGOING", unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1},
		{"SO_RCVBUFFORCE", unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, packetBufSize},
		{"SO_SNDBUFFORCE", unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, packetBufSize},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.on); err != nil {
			p.Close()
			if errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("%s: %s: %w (%w)", name, o.what, ErrNeedPrivilege, err)
			}
			return nil, fmt.Errorf("%s: %s: %w", name, o.what, err)
		}
	}
	if err := attachFilter(fd, prog); err != nil {
		p.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		p.Close()
		return nil, fmt.Errorf("%s: binding the packet socket: %w", name, err)
	}
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func attachFilter(fd int, prog []bpf.RawInstruction) error {
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("SO_ATTACH_FILTER: %w", err)
	}
	return nil
}

// SetFilter replaces the socket's filter with one for spec. The kernel swaps
// filters atomically: every frame meets either the old or the new one.
func (p *PacketSocket) SetFilter(spec FilterSpec) error {
	prog, err := BuildFilter(spec)
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return fmt.Errorf("%s: packet socket closed", p.Name)
	}
	if err := attachFilter(p.fd, prog); err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	return nil
}

// Endpoint returns the socket's link endpoint: ustack's vnet endpoint, the
// tap's, carrying whole Ethernet frames with the interface's MAC (wrap it
// in ethernet.New) and host GSO/GRO super-frames up to 64 KiB through the
// virtio-net header. Its reader delivers each frame to the stack itself
// and, with busyPoll above zero, keeps polling that long after each frame
// before it sleeps. Received checksums are verified by the stack unless
// the kernel left them partial (a local sender on a veth), which the
// endpoint completes; a corrupt frame is counted and dropped. The endpoint
// reads a duplicate of the fd, closed with the stack's NIC; the
// PacketSocket keeps and closes its own.
//
// gVisor's fdbased endpoint also reads packet sockets, but it hands each
// frame from its reader to another goroutine, it can only trust or
// re-verify every checksum (not complete a partial one), and its reader
// blocks in ppoll, so it could not busy-poll. Measured on a veth, this
// endpoint sends faster and receives at least as fast (BENCHMARKS.md).
func (p *PacketSocket) Endpoint(mtu int, busyPoll time.Duration) (stack.LinkEndpoint, error) {
	p.mu.Lock()
	fd, err := unix.FcntlInt(uintptr(p.fd), unix.F_DUPFD_CLOEXEC, 0)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	ep, err := newVnetEndpoint(fd, "packet:"+p.Name, uint32(mtu), tcpip.LinkAddress(p.MAC), busyPoll)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	return ep, nil
}

// FrameSocketEndpoint returns the endpoint on fd, a socket that carries
// one frame per message with a virtio-net header in front as a packet
// socket with PACKET_VNET_HDR does (ustack portd's frame socket), for a
// stack whose frames come from and go to mac. It is the packet socket's
// endpoint (PacketSocket.Endpoint): the same reader, the same checks of
// every received checksum, the same counters (CountDropsIn), so a stack
// behind portd drops exactly the frames a root stack on the interface
// drops. It reads a duplicate of fd, closed with the stack's NIC; the
// caller keeps and closes its own.
func FrameSocketEndpoint(fd int, name string, mtu int, mac net.HardwareAddr) (stack.LinkEndpoint, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ep, err := newVnetEndpoint(dup, name, uint32(mtu), tcpip.LinkAddress(mac), 0)
	if err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ep, nil
}

// Fd returns the socket's descriptor for a caller that moves frames itself
// (ustack portd does, between its clients and the interface). The
// PacketSocket still owns and closes it.
func (p *PacketSocket) Fd() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fd
}

// Close closes the socket.
func (p *PacketSocket) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}
