package link

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// NewSocketEndpoint returns a link endpoint on fd, a connected
// SOCK_SEQPACKET socket that carries one Ethernet frame per message with a
// virtio-net header in front, as a packet socket with PACKET_VNET_HDR does
// (the frames of ustack switch's ports). TCP super-frames of up to 64 KiB
// cross it whole, their checksums left partial by the sender and completed
// by the receiver; a write waits while the socket is full. It carries whole
// frames: wrap it in ethernet.New for the framing. The endpoint takes fd
// over, also on error, and closes it with the stack's NIC; when the peer
// closes its end, the endpoint stops reading (the link is cut).
func NewSocketEndpoint(fd int, name string, mtu int, addr tcpip.LinkAddress) (stack.LinkEndpoint, error) {
	ep, err := newVnetEndpoint(fd, name, uint32(mtu), addr, 0)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return ep, nil
}
