package server

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack/hostports"
)

func TestVerifier(t *testing.T) {
	mac := [6]byte{0x02, 0, 0, 0, 0, 0x02}
	other := [6]byte{0x02, 0, 0, 0, 0, 0x09}
	me4, me6 := netip.MustParseAddr("10.79.0.2"), netip.MustParseAddr("fd79::2")
	peer4, peer6 := netip.MustParseAddr("10.79.0.1"), netip.MustParseAddr("fd79::1")
	v := newVerifier(mac, []netip.Addr{me4, me6})
	v.addPorts(hostports.TCP, 8080, 40000)
	v.addPorts(hostports.UDP, 40000)
	ap := netip.AddrPortFrom

	// A frame the peer sent us, as an ICMP error quotes it.
	quoted := func(dport uint16) []byte {
		return udpDatagram(ap(peer4, 5353), ap(me4, dport), []byte("q"))[:28]
	}
	arp := func(sha [6]byte, spa netip.Addr) []byte {
		p := make([]byte, 28)
		binary.BigEndian.PutUint16(p[0:], 1)
		binary.BigEndian.PutUint16(p[2:], uint16(header.IPv4ProtocolNumber))
		p[4], p[5], p[7] = 6, 4, 1
		copy(p[8:], sha[:])
		copy(p[14:], spa.AsSlice())
		return ethFrame(mac, header.ARPProtocolNumber, p)
	}
	icmp6 := func(src netip.Addr, typ byte, body []byte) []byte {
		m := append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, body...)
		return ethFrame(mac, header.IPv6ProtocolNumber, ipPacket(src, peer6, header.ICMPv6ProtocolNumber, m, -1))
	}
	frag := func(off uint16, id uint16, more bool) []byte {
		f := UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), make([]byte, 64))
		ip := f[header.VirtioNetHeaderSize+ethHdrLen:]
		binary.BigEndian.PutUint16(ip[4:], id)
		ff := off / 8
		if more {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(ip[6:], ff)
		return f
	}
	tcpFrame := TCPFrame(mac, ap(me4, 40000), ap(peer4, 80), 0x10)

	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"udp from a held port", UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), []byte("x")), nil},
		{"udp over ipv6", UDPFrame(mac, ap(me6, 40000), ap(peer6, 53), []byte("x")), nil},
		{"tcp from a listening port", TCPFrame(mac, ap(me4, 8080), ap(peer4, 5555), 0x12), nil},
		{"tcp with checksum offload", WithVnet(tcpFrame, unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 16), nil},
		{"tcp super-frame", WithVnet(tcpFrame, unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, unix.VIRTIO_NET_HDR_GSO_TCPV4, 34, 16), nil},
		{"arp from us", arp(mac, me4), nil},
		{"icmp echo request", ICMPErrorFrame(mac, me4, peer4, 8, nil), nil},
		{"port unreachable for our port", ICMPErrorFrame(mac, me4, peer4, 3, quoted(40000)), nil},
		{"icmpv6 echo request", icmp6(me6, 128, nil), nil},
		{"neighbour advertisement of ours", icmp6(me6, 136, append(make([]byte, 0), me6.AsSlice()...)), nil},
		{"neighbour solicitation from ::", icmp6(netip.IPv6Unspecified(), 135, make([]byte, 16)), nil},
		{"first fragment then the rest", frag(0, 7, true), nil},
		{"later fragment of it", frag(64, 7, false), nil},

		{"short", make([]byte, 12), errShort},
		{"forged MAC", UDPFrame(other, ap(me4, 40000), ap(peer4, 53), nil), errSrcMAC},
		{"forged address", UDPFrame(mac, ap(netip.MustParseAddr("10.79.0.77"), 40000), ap(peer4, 53), nil), errSrcIP},
		{"forged ipv6 address", UDPFrame(mac, ap(peer6, 40000), ap(peer6, 53), nil), errSrcIP},
		{"port not held", UDPFrame(mac, ap(me4, 22), ap(peer4, 53), nil), errSrcPort},
		{"udp port held only for tcp", UDPFrame(mac, ap(me4, 8080), ap(peer4, 53), nil), errSrcPort},
		{"tcp reset from the kernel's port", TCPFrame(mac, ap(me4, 22), ap(peer4, 5555), 0x04), errSrcPort},
		{"checksum written over the source port", WithVnet(tcpFrame, unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 0), errVnet},
		{"checksum start in the IP header", WithVnet(tcpFrame, unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 14, 16), errVnet},
		{"udp segmentation", WithVnet(UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), nil), unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, 3, 34, 6), errVnet},
		{"ipv6 segmentation of ipv4", WithVnet(tcpFrame, unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, unix.VIRTIO_NET_HDR_GSO_TCPV6, 34, 16), errVnet},
		{"arp for someone else's address", arp(mac, peer4), errARP},
		{"arp with another MAC inside", arp(other, me4), errARP},
		{"port unreachable for the kernel's port", ICMPErrorFrame(mac, me4, peer4, 3, quoted(22)), errICMPQuote},
		{"icmp redirect", ICMPErrorFrame(mac, me4, peer4, 5, quoted(40000)), errICMPType},
		{"icmp echo reply", ICMPErrorFrame(mac, me4, peer4, 0, nil), errICMPType},
		{"neighbour advertisement of another address", icmp6(me6, 136, peer6.AsSlice()), errIPv6Target},
		{"router advertisement", icmp6(me6, 134, nil), errICMPType},
		{"later fragment of nothing", frag(64, 9, false), errFragment},
		{"ipx", ethFrame(mac, 0x8137, make([]byte, 40)), errEtherType},
		{"igmp", ethFrame(mac, header.IPv4ProtocolNumber, ipPacket(me4, peer4, 2, make([]byte, 8), -1)), errProto},
		{"truncated ipv4", ethFrame(mac, header.IPv4ProtocolNumber, []byte{0x45, 0}), errIPHeader},
		{"ipv4 header longer than the packet", ethFrame(mac, header.IPv4ProtocolNumber, append([]byte{0x4f}, make([]byte, 30)...)), errIPHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := v.check(tc.frame); !errors.Is(err, tc.want) {
				t.Errorf("check = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzVerifier: no frame makes the check panic.
func FuzzVerifier(f *testing.F) {
	mac := [6]byte{2, 0, 0, 0, 0, 2}
	me := netip.MustParseAddr("10.79.0.2")
	f.Add(UDPFrame(mac, netip.AddrPortFrom(me, 1), netip.AddrPortFrom(me, 2), nil))
	f.Add(make([]byte, 30))
	v := newVerifier(mac, []netip.Addr{me, netip.MustParseAddr("fd79::2")})
	v.addPorts(hostports.UDP, 1)
	f.Fuzz(func(t *testing.T, b []byte) { v.check(b) })
}
