package server

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/ustack/ustack/link"
)

// Frames as a client writes them to its frame socket: a virtio-net header
// (zero unless set), then Ethernet to the broadcast address.

func ethFrame(src [6]byte, etherType uint16, l3 []byte) []byte {
	f := make([]byte, vnetHdrLen+ethHdrLen, vnetHdrLen+ethHdrLen+len(l3))
	copy(f[vnetHdrLen:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[vnetHdrLen+6:], src[:])
	binary.BigEndian.PutUint16(f[vnetHdrLen+12:], etherType)
	return append(f, l3...)
}

// ipPacket wraps l4 (whose checksum, at csumAt if not negative, is filled
// in over the pseudo-header) in an IPv4 or IPv6 header.
func ipPacket(src, dst netip.Addr, proto byte, l4 []byte, csumAt int) []byte {
	l4 = append([]byte(nil), l4...)
	if csumAt >= 0 {
		binary.BigEndian.PutUint16(l4[csumAt:], 0)
		var pseudo []byte
		pseudo = append(pseudo, src.AsSlice()...)
		pseudo = append(pseudo, dst.AsSlice()...)
		pseudo = append(pseudo, 0, proto)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(l4)))
		if proto == protoICMP {
			pseudo = nil // ICMPv4 has no pseudo-header
		}
		sum := checksum.Checksum(l4, checksum.Checksum(pseudo, 0))
		binary.BigEndian.PutUint16(l4[csumAt:], ^sum)
	}
	if src.Is4() {
		h := make([]byte, 20)
		h[0], h[8], h[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		copy(h[12:], src.AsSlice())
		copy(h[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(h[10:], ^checksum.Checksum(h, 0))
		return append(h, l4...)
	}
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, proto, 64
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
	return ipPacket(src.Addr(), dst.Addr(), protoUDP, append(u, payload...), 6)
}

// UDPFrame is a UDP datagram from src to dst in a frame from mac.
func UDPFrame(mac [6]byte, src, dst netip.AddrPort, payload []byte) []byte {
	et := uint16(etherTypeIPv4)
	if src.Addr().Is6() {
		et = etherTypeIPv6
	}
	return ethFrame(mac, et, udpDatagram(src, dst, payload))
}

// ICMPErrorFrame is an ICMPv4 error of type typ from src to dst quoting
// the start of quoted, an IPv4 packet.
func ICMPErrorFrame(mac [6]byte, src, dst netip.Addr, typ byte, quoted []byte) []byte {
	m := make([]byte, 8, 8+len(quoted))
	m[0] = typ
	return ethFrame(mac, etherTypeIPv4, ipPacket(src, dst, protoICMP, append(m, quoted...), 2))
}

// TCPFrame is a bare TCP segment with the given flags.
func TCPFrame(mac [6]byte, src, dst netip.AddrPort, flags byte) []byte {
	t := make([]byte, 20)
	binary.BigEndian.PutUint16(t[0:], src.Port())
	binary.BigEndian.PutUint16(t[2:], dst.Port())
	t[12], t[13] = 0x50, flags
	binary.BigEndian.PutUint16(t[14:], 65535)
	et := uint16(etherTypeIPv4)
	if src.Addr().Is6() {
		et = etherTypeIPv6
	}
	return ethFrame(mac, et, ipPacket(src.Addr(), dst.Addr(), protoTCP, t, 16))
}

// WithVnet sets the virtio-net header of frame f.
func WithVnet(f []byte, flags, gsoType byte, csumStart, csumOffset uint16) []byte {
	f = append([]byte(nil), f...)
	f[0], f[1] = flags, gsoType
	binary.LittleEndian.PutUint16(f[6:], csumStart)
	binary.LittleEndian.PutUint16(f[8:], csumOffset)
	return f
}

// testGrant is the grant of the frame check's tests: mac, two addresses
// and a few ports.
var (
	testMAC   = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	testGrant = link.FilterSpec{
		IPv4: []netip.Addr{netip.MustParseAddr("10.79.0.2")},
		IPv6: []netip.Addr{netip.MustParseAddr("fd79::2")},
		TCP:  []uint16{8080, 40000},
		UDP:  []uint16{40000},
	}
)

// ARPFrame is an ARP request in a frame from ethSrc whose sender is sha,
// spa.
func ARPFrame(ethSrc, sha [6]byte, spa netip.Addr) []byte {
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[0:], 1)
	binary.BigEndian.PutUint16(p[2:], etherTypeIPv4)
	p[4], p[5], p[7] = 6, 4, 1
	copy(p[8:], sha[:])
	copy(p[14:], spa.AsSlice())
	return ethFrame(ethSrc, etherTypeARP, p)
}

func arpFrame(ethSrc, sha [6]byte, spa netip.Addr) []byte { return ARPFrame(ethSrc, sha, spa) }

// ICMP6Frame is an ICMPv6 message of type typ (code 0) whose body follows
// the 4 bytes of type, code and checksum.
func ICMP6Frame(mac [6]byte, src, dst netip.Addr, typ byte, body []byte) []byte {
	m := append([]byte{typ, 0, 0, 0}, body...)
	for len(m) < 8 {
		m = append(m, 0)
	}
	p := ipPacket(src, dst, protoICMPv6, m, 2)
	p[7] = 255 // neighbour discovery's hop limit
	return ethFrame(mac, etherTypeIPv6, p)
}

// icmp6Frame is an ICMPv6 message of type typ whose body starts after the
// 8 bytes of header (for neighbour discovery: after the reserved field).
func icmp6Frame(mac [6]byte, src, dst netip.Addr, typ byte, body []byte) []byte {
	return ICMP6Frame(mac, src, dst, typ, append(make([]byte, 4), body...))
}

// NDP is the body of a neighbour solicitation or advertisement for target
// with options, after the 4 bytes of flags.
func NDP(target netip.Addr, opts ...[]byte) []byte {
	b := append(make([]byte, 4), target.AsSlice()...)
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}

// ndp is NDP without the flags (icmp6Frame adds them).
func ndp(target netip.Addr, opts ...[]byte) []byte { return NDP(target, opts...)[4:] }

// LLA is a source (1) or target (2) link-layer address option.
func LLA(typ byte, mac [6]byte) []byte { return append([]byte{typ, 1}, mac[:]...) }

func lla(typ byte, mac [6]byte) []byte { return LLA(typ, mac) }

// fragFrame is a fragment of a UDP datagram from src to dst: the first
// (off 0) carries the UDP header.
func fragFrame(mac [6]byte, src, dst netip.AddrPort, off, id uint16, more bool) []byte {
	f := UDPFrame(mac, src, dst, make([]byte, 64))
	ip := f[vnetHdrLen+ethHdrLen:]
	binary.BigEndian.PutUint16(ip[4:], id)
	ff := off / 8
	if more {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(ip[6:], ff)
	return withIPv4Sum(f)
}

// withIPv4Sum fills in the IPv4 header checksum of frame f again.
func withIPv4Sum(f []byte) []byte {
	h := f[vnetHdrLen+ethHdrLen:][:int(f[vnetHdrLen+ethHdrLen]&0x0f)*4]
	binary.BigEndian.PutUint16(h[10:], 0)
	binary.BigEndian.PutUint16(h[10:], ^checksum.Checksum(h, 0))
	return f
}

// noUDPSum is UDP frame f with checksum 0 (none, over IPv4).
func noUDPSum(f []byte) []byte {
	f = append([]byte(nil), f...)
	ip := f[vnetHdrLen+ethHdrLen:]
	l3 := ipv4HdrLen
	if ip[0]>>4 == 6 {
		l3 = ipv6HdrLen
	}
	binary.BigEndian.PutUint16(ip[l3+6:], 0)
	return f
}

// withTotalLength sets the total length of IPv4 frame f.
func withTotalLength(f []byte, n uint16) []byte {
	f = append([]byte(nil), f...)
	binary.BigEndian.PutUint16(f[vnetHdrLen+ethHdrLen+2:], n)
	return f
}

// WithBadIPv4Sum is IPv4 frame f with its header checksum wrong.
func WithBadIPv4Sum(f []byte) []byte {
	f = append([]byte(nil), f...)
	f[vnetHdrLen+ethHdrLen+10] ^= 0x5a
	return f
}

// WithBadL4Sum is frame f, TCP or UDP over IPv4 (no options) or IPv6
// (no extension headers), with its transport checksum wrong.
func WithBadL4Sum(f []byte) []byte {
	f = append([]byte(nil), f...)
	ip := f[vnetHdrLen+ethHdrLen:]
	l3, proto := ipv4HdrLen, ip[9]
	if ip[0]>>4 == 6 {
		l3, proto = ipv6HdrLen, ip[6]
	}
	at := l3 + 6
	if proto == protoTCP {
		at = l3 + 16
	}
	ip[at] ^= 0x5a
	return f
}

// withProto sets the protocol of an IPv4 frame.
func withProto(f []byte, proto byte) []byte {
	f = append([]byte(nil), f...)
	f[vnetHdrLen+ethHdrLen+9] = proto
	return withIPv4Sum(f)
}

// withIPv4Options puts opts (a multiple of 4 bytes) into an IPv4 frame's
// header.
func withIPv4Options(f []byte, opts []byte) []byte {
	ip := f[vnetHdrLen+ethHdrLen:]
	h := append(append([]byte(nil), ip[:20]...), opts...)
	h[0] = 0x40 | byte(len(h)/4)
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+len(ip)-20))
	out := append(append([]byte(nil), f[:vnetHdrLen+ethHdrLen]...), h...)
	return withIPv4Sum(append(out, ip[20:]...))
}

// shortenIPv6Payload cuts the last byte off a frame but not off its IPv6
// payload length.
func shortenIPv6Payload(f []byte) []byte { return f[:len(f)-1] }
