package nat

import (
	"errors"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/netstack"
)

// unreachableCode is the ICMP destination-unreachable code that tells the
// guest what the host's connect said, as a router on the path would, so the
// guest program sees ENETUNREACH or EHOSTUNREACH as it would on Linux. ok is
// false for errors ICMP (as netstack reads it) cannot express.
func unreachableCode(err error, v4 bool) (code uint8, ok bool) {
	switch {
	case errors.Is(err, syscall.ENETUNREACH) && v4:
		return uint8(header.ICMPv4NetUnreachable), true
	case errors.Is(err, syscall.EHOSTUNREACH) && v4:
		return uint8(header.ICMPv4HostUnreachable), true
	case errors.Is(err, syscall.ENETUNREACH):
		return uint8(header.ICMPv6NetworkUnreachable), true
	}
	// netstack ignores ICMPv6 "address unreachable".
	return 0, false
}

// sendUnreachable answers the guest's TCP SYN described by id (Local is what
// the guest dialled, Remote the guest) with an ICMP destination-unreachable
// from the gateway. It reports false when it could not, for instance when
// the guest's MAC is not in the gateway's neighbour table.
func (g *Gateway) sendUnreachable(id stack.TransportEndpointID, code uint8) bool {
	dst, guest := id.LocalAddress, id.RemoteAddress
	v4 := dst.Len() == 4
	proto, gw := ipv6.ProtocolNumber, g.cfg.Gateway6
	if v4 {
		proto, gw = ipv4.ProtocolNumber, g.cfg.Gateway4
	}
	if !gw.IsValid() {
		return false
	}
	guestMAC, ok := g.neighbour(proto, guest)
	if !ok {
		return false
	}
	ownMAC := g.ns.NICInfo()[gatewayNIC].LinkAddress
	src := netstack.Address(gw)

	// The offending packet as the guest sent it: its IP header and the first
	// 8 bytes of TCP, which carry the ports that name the connection.
	syn := make([]byte, header.TCPMinimumSize)
	header.TCP(syn).Encode(&header.TCPFields{SrcPort: id.RemotePort, DstPort: id.LocalPort,
		DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn})
	var quoted []byte
	if v4 {
		quoted = make([]byte, header.IPv4MinimumSize+8)
		h := header.IPv4(quoted)
		h.Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize,
			TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: guest, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
	} else {
		quoted = make([]byte, header.IPv6MinimumSize+8)
		header.IPv6(quoted).Encode(&header.IPv6Fields{PayloadLength: header.TCPMinimumSize,
			TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: guest, DstAddr: dst})
	}
	copy(quoted[len(quoted)-8:], syn)
	typ := uint8(header.ICMPv6DstUnreachable)
	if v4 {
		typ = uint8(header.ICMPv4DstUnreachable)
	}
	_, ip := icmpPacket(src, guest, typ, code, [4]byte{}, quoted)
	g.echo.writeIP(proto, ownMAC, guestMAC, ip)
	return true
}

// neighbour is the link address the gateway has learned for addr (from the
// guest's ARP or neighbour solicitation for the gateway).
func (g *Gateway) neighbour(proto tcpip.NetworkProtocolNumber, addr tcpip.Address) (tcpip.LinkAddress, bool) {
	entries, err := g.ns.Neighbors(gatewayNIC, proto)
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if e.Addr == addr && e.LinkAddr != "" {
			return e.LinkAddr, true
		}
	}
	return "", false
}
