package server

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Frames as a client writes them to its frame socket: a virtio-net header
// (zero unless set), then Ethernet to the broadcast address.

func ethFrame(src [6]byte, etherType tcpip.NetworkProtocolNumber, l3 []byte) []byte {
	f := make([]byte, header.VirtioNetHeaderSize+ethHdrLen, header.VirtioNetHeaderSize+ethHdrLen+len(l3))
	copy(f[header.VirtioNetHeaderSize:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[header.VirtioNetHeaderSize+6:], src[:])
	binary.BigEndian.PutUint16(f[header.VirtioNetHeaderSize+12:], uint16(etherType))
	return append(f, l3...)
}

// ipPacket wraps l4 (whose checksum, at csumAt if not negative, is filled
// in over the pseudo-header) in an IPv4 or IPv6 header.
func ipPacket(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, l4 []byte, csumAt int) []byte {
	l4 = append([]byte(nil), l4...)
	if csumAt >= 0 {
		binary.BigEndian.PutUint16(l4[csumAt:], 0)
		var pseudo []byte
		pseudo = append(pseudo, src.AsSlice()...)
		pseudo = append(pseudo, dst.AsSlice()...)
		pseudo = append(pseudo, 0, byte(proto))
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(l4)))
		if proto == header.ICMPv4ProtocolNumber {
			pseudo = nil // ICMPv4 has no pseudo-header
		}
		sum := checksum.Checksum(l4, checksum.Checksum(pseudo, 0))
		binary.BigEndian.PutUint16(l4[csumAt:], ^sum)
	}
	if src.Is4() {
		h := make([]byte, 20)
		h[0], h[8], h[9] = 0x45, 64, byte(proto)
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		copy(h[12:], src.AsSlice())
		copy(h[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(h[10:], ^checksum.Checksum(h, 0))
		return append(h, l4...)
	}
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, byte(proto), 64
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	copy(h[8:], src.AsSlice())
	copy(h[24:], dst.AsSlice())
	return append(h, l4...)
}

func udpDatagram(src, dst netip.AddrPort, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return ipPacket(src.Addr(), dst.Addr(), header.UDPProtocolNumber, append(u, payload...), 6)
}

// UDPFrame is a UDP datagram from src to dst in a frame from mac.
func UDPFrame(mac [6]byte, src, dst netip.AddrPort, payload []byte) []byte {
	et := header.IPv4ProtocolNumber
	if src.Addr().Is6() {
		et = header.IPv6ProtocolNumber
	}
	return ethFrame(mac, et, udpDatagram(src, dst, payload))
}

// ICMPErrorFrame is an ICMPv4 error of type typ from src to dst quoting
// the start of quoted, an IPv4 packet.
func ICMPErrorFrame(mac [6]byte, src, dst netip.Addr, typ byte, quoted []byte) []byte {
	m := make([]byte, 8, 8+len(quoted))
	m[0] = typ
	return ethFrame(mac, header.IPv4ProtocolNumber, ipPacket(src, dst, header.ICMPv4ProtocolNumber, append(m, quoted...), 2))
}

// TCPFrame is a bare TCP segment with the given flags.
func TCPFrame(mac [6]byte, src, dst netip.AddrPort, flags byte) []byte {
	t := make([]byte, 20)
	binary.BigEndian.PutUint16(t[0:], src.Port())
	binary.BigEndian.PutUint16(t[2:], dst.Port())
	t[12], t[13] = 0x50, flags
	binary.BigEndian.PutUint16(t[14:], 65535)
	et := header.IPv4ProtocolNumber
	if src.Addr().Is6() {
		et = header.IPv6ProtocolNumber
	}
	return ethFrame(mac, et, ipPacket(src.Addr(), dst.Addr(), header.TCPProtocolNumber, t, 16))
}

// WithVnet sets the virtio-net header of frame f.
func WithVnet(f []byte, flags, gsoType byte, csumStart, csumOffset uint16) []byte {
	f = append([]byte(nil), f...)
	f[0], f[1] = flags, gsoType
	binary.LittleEndian.PutUint16(f[6:], csumStart)
	binary.LittleEndian.PutUint16(f[8:], csumOffset)
	return f
}
