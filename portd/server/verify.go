package server

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack/hostports"
)

// Why a frame from a client was refused. Each is a fixed value so that a
// refusal costs no allocation; the first of each client is logged.
var (
	errShort      = errors.New("frame too short for its headers")
	errVnet       = errors.New("virtio-net header asks for a checksum or segmentation that does not fit the packet")
	errSrcMAC     = errors.New("source MAC is not the interface's")
	errEtherType  = errors.New("EtherType not allowed (only ARP, IPv4, IPv6)")
	errARP        = errors.New("ARP not from the interface's MAC and a shared IPv4 address")
	errSrcIP      = errors.New("source IP address is not one the client shares")
	errIPHeader   = errors.New("malformed IP header")
	errFragment   = errors.New("IPv4 fragment of no datagram the client sent")
	errProto      = errors.New("IP protocol not allowed (only TCP, UDP, ICMP echo and errors)")
	errSrcPort    = errors.New("source port is not one the client holds")
	errICMPType   = errors.New("ICMP type not allowed")
	errICMPQuote  = errors.New("ICMP error quoting a packet not sent to the client's ports")
	errIPv6Target = errors.New("neighbour advertisement for an address the client does not share")
)

const (
	recentFrags    = 64
	ethHdrLen      = 14
	ipv6HdrLen     = 40
	icmpErrorQuote = 8 // the quoted packet starts after the ICMP header
)

// portSet is a bitmap of held ports per protocol, replaced whole when a
// port is added so the sending path reads it without a lock.
type portSet struct{ tcp, udp [1024]uint64 }

func (s *portSet) has(proto tcpip.TransportProtocolNumber, port uint16) bool {
	bits := &s.tcp
	if proto == header.UDPProtocolNumber {
		bits = &s.udp
	} else if proto != header.TCPProtocolNumber {
		return false
	}
	return bits[port/64]&(1<<(port%64)) != 0
}

func (s *portSet) with(proto hostports.Proto, ports ...uint16) *portSet {
	n := *s
	bits := &n.tcp
	if proto == hostports.UDP {
		bits = &n.udp
	}
	for _, p := range ports {
		bits[p/64] |= 1 << (p % 64)
	}
	return &n
}

// verifier checks the frames one client sends. check is called from one
// goroutine only (the session's sending loop); ports may be replaced
// concurrently.
type verifier struct {
	mac      [6]byte
	ip4, ip6 []netip.Addr
	ports    atomic.Pointer[portSet]

	// IDs of the last fragmented IPv4 datagrams whose first fragment
	// passed: later fragments carry no ports and are let through only for
	// these.
	frags    [recentFrags]uint32 // src address low bits << 16 | id
	fragNext int
}

func newVerifier(mac [6]byte, addrs []netip.Addr) *verifier {
	v := &verifier{mac: mac}
	for _, a := range addrs {
		if a.Is4() {
			v.ip4 = append(v.ip4, a)
		} else {
			v.ip6 = append(v.ip6, a)
		}
	}
	v.ports.Store(&portSet{})
	return v
}

func (v *verifier) addPorts(proto hostports.Proto, ports ...uint16) {
	v.ports.Store(v.ports.Load().with(proto, ports...))
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// check returns nil if the client may send b, a virtio-net header and an
// Ethernet frame.
func (v *verifier) check(b []byte) error {
	if len(b) < header.VirtioNetHeaderSize+ethHdrLen {
		return errShort
	}
	vh, f := b[:header.VirtioNetHeaderSize], b[header.VirtioNetHeaderSize:]
	if [6]byte(f[6:12]) != v.mac {
		return errSrcMAC
	}
	switch tcpip.NetworkProtocolNumber(be16(f[12:])) {
	case header.ARPProtocolNumber:
		return v.checkARP(vh, f[ethHdrLen:])
	case header.IPv4ProtocolNumber:
		return v.checkIPv4(vh, f[ethHdrLen:])
	case header.IPv6ProtocolNumber:
		return v.checkIPv6(vh, f[ethHdrLen:])
	}
	return errEtherType
}

// checkVnet allows a checksum request only at the checksum field of the
// packet's own transport header, and segmentation only of TCP: anything
// else would let the kernel write over headers after they were checked.
func checkVnet(vh []byte, l3Len int, proto tcpip.TransportProtocolNumber, v6 bool) error {
	flags, gso := vh[0], vh[1]&^unix.VIRTIO_NET_HDR_GSO_ECN
	csumStart := int(binary.LittleEndian.Uint16(vh[6:]))
	csumOffset := int(binary.LittleEndian.Uint16(vh[8:]))
	if flags&^(unix.VIRTIO_NET_HDR_F_NEEDS_CSUM|unix.VIRTIO_NET_HDR_F_DATA_VALID) != 0 {
		return errVnet
	}
	if flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
		want := map[tcpip.TransportProtocolNumber]int{header.TCPProtocolNumber: 16, header.UDPProtocolNumber: 6, header.ICMPv4ProtocolNumber: 2, header.ICMPv6ProtocolNumber: 2}[proto]
		if want == 0 || csumStart != ethHdrLen+l3Len || csumOffset != want {
			return errVnet
		}
	}
	switch gso {
	case unix.VIRTIO_NET_HDR_GSO_NONE:
	case unix.VIRTIO_NET_HDR_GSO_TCPV4, unix.VIRTIO_NET_HDR_GSO_TCPV6:
		if proto != header.TCPProtocolNumber || (gso == unix.VIRTIO_NET_HDR_GSO_TCPV6) != v6 || flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
			return errVnet
		}
	default:
		return errVnet
	}
	return nil
}

func noOffload(vh []byte) error {
	if vh[0] != 0 || vh[1] != 0 {
		return errVnet
	}
	return nil
}

func (v *verifier) checkARP(vh, p []byte) error {
	if err := noOffload(vh); err != nil {
		return err
	}
	if len(p) < 28 {
		return errShort
	}
	// Ethernet/IPv4 ARP, sender hardware and protocol address ours.
	if be16(p[0:]) != 1 || tcpip.NetworkProtocolNumber(be16(p[2:])) != header.IPv4ProtocolNumber || p[4] != 6 || p[5] != 4 ||
		[6]byte(p[8:14]) != v.mac || !slices.Contains(v.ip4, netip.AddrFrom4([4]byte(p[14:18]))) {
		return errARP
	}
	return nil
}

func (v *verifier) checkIPv4(vh, p []byte) error {
	if len(p) < 20 || p[0]>>4 != 4 {
		return errIPHeader
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || len(p) < ihl {
		return errIPHeader
	}
	src := netip.AddrFrom4([4]byte(p[12:16]))
	if !slices.Contains(v.ip4, src) {
		return errSrcIP
	}
	proto := tcpip.TransportProtocolNumber(p[9])
	frag := be16(p[6:])
	key := uint32(be16(p[14:]))<<16 | uint32(be16(p[4:]))
	if frag&0x1fff != 0 {
		// A later fragment: its ports were in the first.
		if err := noOffload(vh); err != nil {
			return err
		}
		if !slices.Contains(v.frags[:], key) {
			return errFragment
		}
		return nil
	}
	if err := checkVnet(vh, ihl, proto, false); err != nil {
		return err
	}
	if err := v.checkL4(proto, p[ihl:], false); err != nil {
		return err
	}
	if frag&0x2000 != 0 { // more fragments: remember the datagram
		v.frags[v.fragNext] = key
		v.fragNext = (v.fragNext + 1) % recentFrags
	}
	return nil
}

func (v *verifier) checkIPv6(vh, p []byte) error {
	if len(p) < ipv6HdrLen || p[0]>>4 != 6 {
		return errIPHeader
	}
	src := netip.AddrFrom16([16]byte(p[8:24]))
	next := tcpip.TransportProtocolNumber(p[6])
	l4 := p[ipv6HdrLen:]
	if !slices.Contains(v.ip6, src) {
		// Neighbour discovery and MLD may come from the unspecified
		// address.
		if !src.IsUnspecified() || next != header.ICMPv6ProtocolNumber || len(l4) < 1 || (l4[0] != 135 && l4[0] != 143) {
			return errSrcIP
		}
	}
	if err := checkVnet(vh, ipv6HdrLen, next, true); err != nil {
		return err
	}
	return v.checkL4(next, l4, true)
}

// checkL4 checks the transport header: the source port of TCP and UDP, the
// type of ICMP, and what an ICMP error quotes.
func (v *verifier) checkL4(proto tcpip.TransportProtocolNumber, l4 []byte, v6 bool) error {
	switch proto {
	case header.TCPProtocolNumber, header.UDPProtocolNumber:
		if len(l4) < 4 {
			return errShort
		}
		if !v.ports.Load().has(proto, be16(l4)) {
			return errSrcPort
		}
		return nil
	case header.ICMPv4ProtocolNumber:
		if v6 {
			return errProto
		}
		if len(l4) < icmpErrorQuote {
			return errShort
		}
		switch l4[0] {
		case 8: // echo request
			return nil
		case 3, 11, 12: // unreachable, time exceeded, parameter problem
			return v.checkQuote4(l4[icmpErrorQuote:])
		}
		return errICMPType
	case header.ICMPv6ProtocolNumber:
		if !v6 {
			return errProto
		}
		if len(l4) < icmpErrorQuote {
			return errShort
		}
		switch l4[0] {
		case 128, 133, 135, 143: // echo request, router and neighbour solicitation, MLDv2 report
			return nil
		case 136: // neighbour advertisement: only for our own addresses
			if len(l4) < 24 || !slices.Contains(v.ip6, netip.AddrFrom16([16]byte(l4[8:24]))) {
				return errIPv6Target
			}
			return nil
		case 1, 2, 3, 4: // unreachable, too big, time exceeded, parameter problem
			return v.checkQuote6(l4[icmpErrorQuote:])
		}
		return errICMPType
	}
	return errProto
}

// checkQuote4: an ICMP error must be about a packet sent to the client, to
// one of its ports, so that it cannot end the host's own connections.
func (v *verifier) checkQuote4(q []byte) error {
	if len(q) < 20 || q[0]>>4 != 4 {
		return errICMPQuote
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 || len(q) < ihl+4 || !slices.Contains(v.ip4, netip.AddrFrom4([4]byte(q[16:20]))) {
		return errICMPQuote
	}
	if !v.ports.Load().has(tcpip.TransportProtocolNumber(q[9]), be16(q[ihl+2:])) {
		return errICMPQuote
	}
	return nil
}

func (v *verifier) checkQuote6(q []byte) error {
	if len(q) < ipv6HdrLen+4 || q[0]>>4 != 6 || !slices.Contains(v.ip6, netip.AddrFrom16([16]byte(q[24:40]))) {
		return errICMPQuote
	}
	if !v.ports.Load().has(tcpip.TransportProtocolNumber(q[6]), be16(q[ipv6HdrLen+2:])) {
		return errICMPQuote
	}
	return nil
}
