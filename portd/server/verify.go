package server

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack/link"
)

// The frame check: what a client may send, and which IPv4 fragments it
// receives. With the packet filter (link.BuildFilter), which decides the
// rest of what a client receives, it enforces the rules README.md states
// under "What a client may do (portd's threat model)". Both are derived from
// one grant, the share's link.FilterSpec (addresses and ports), so they
// cannot disagree about what the client holds.

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
	errIPOptions  = errors.New("IPv4 options (source route, record route or any other) not allowed")
	errExtHeader  = errors.New("IPv6 extension headers (routing, fragment, hop-by-hop, destination options) not allowed")
	errFragment   = errors.New("IPv4 fragment of no datagram the client sent")
	errProto      = errors.New("IP protocol not allowed (only TCP, UDP, ICMP echo and errors)")
	errSrcPort    = errors.New("source port is not one the client holds")
	errICMPType   = errors.New("ICMP type not allowed")
	errICMPQuote  = errors.New("ICMP error quoting a packet not sent to the client's ports")
	errIPv6Target = errors.New("neighbour advertisement for an address the client does not share")
	errDAD        = errors.New("duplicate address detection (from ::) for an address the client does not share")
	errNDPOption  = errors.New("neighbour discovery option naming another MAC, malformed, or not allowed")
	errNDPType    = errors.New("router advertisements, redirects and MLD not allowed")
	errChecksum   = errors.New("bad IPv4 header, TCP or UDP checksum")
)

// Short names for the values the check compares; the values themselves
// are netstack's (header) and the kernel's (unix).
const (
	etherTypeIPv4 = uint16(header.IPv4ProtocolNumber)
	etherTypeARP  = uint16(header.ARPProtocolNumber)
	etherTypeIPv6 = uint16(header.IPv6ProtocolNumber)

	protoICMP   = byte(header.ICMPv4ProtocolNumber)
	protoTCP    = byte(header.TCPProtocolNumber)
	protoUDP    = byte(header.UDPProtocolNumber)
	protoICMPv6 = byte(header.ICMPv6ProtocolNumber)

	vnetHdrLen    = header.VirtioNetHeaderSize
	vnetNeedsCsum = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetDataValid = unix.VIRTIO_NET_HDR_F_DATA_VALID
	vnetGSONone   = unix.VIRTIO_NET_HDR_GSO_NONE
	vnetGSOTCPv4  = unix.VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOTCPv6  = unix.VIRTIO_NET_HDR_GSO_TCPV6
	vnetGSOECN    = unix.VIRTIO_NET_HDR_GSO_ECN
)

const (
	recentFrags    = 64
	ethHdrLen      = 14
	ipv4HdrLen     = 20
	ipv6HdrLen     = 40
	icmpErrorQuote = 8 // the quoted packet starts after the ICMP header

	// fragTimeout is how long a fragmented datagram's later fragments are
	// let through after its first: Linux's reassembly timeout
	// (net.ipv4.ipfrag_time).
	fragTimeout = 30 * time.Second
)

// ICMPv6 types (RFC 4443, 4861) and neighbour discovery options.
const (
	icmp6EchoRequest  = 128
	icmp6RouterSol    = 133
	icmp6NeighborSol  = 135
	icmp6NeighborAdv  = 136
	ndpSourceLinkAddr = 1
	ndpTargetLinkAddr = 2
	ndpNonce          = 14 // RFC 7527, sent with duplicate address detection
)

// portSet is a bitmap of held ports per protocol, replaced whole when a
// port is added so the sending path reads it without a lock.
type portSet struct{ tcp, udp [1024]uint64 }

func (s *portSet) has(proto byte, port uint16) bool {
	bits := &s.tcp
	if proto == protoUDP {
		bits = &s.udp
	} else if proto != protoTCP {
		return false
	}
	return bits[port/64]&(1<<(port%64)) != 0
}

func newPortSet(spec link.FilterSpec) *portSet {
	var s portSet
	for _, l := range []struct {
		bits  *[1024]uint64
		ports []uint16
	}{{&s.tcp, spec.TCP}, {&s.udp, spec.UDP}} {
		for _, p := range l.ports {
			l.bits[p/64] |= 1 << (p % 64)
		}
	}
	return &s
}

// fragKey names a fragmented IPv4 datagram as reassembly does (RFC 791):
// source, destination, protocol and identification.
type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    byte
}

func fragKeyOf(ip []byte) fragKey {
	return fragKey{src: [4]byte(ip[12:16]), dst: [4]byte(ip[16:20]), id: be16(ip[4:]), proto: ip[9]}
}

// fragTable remembers the last datagrams whose first fragment passed, for
// fragTimeout each: their later fragments carry no ports and pass on this
// alone. It is bounded: the oldest entry makes room for a new one.
type fragTable struct {
	keys  [recentFrags]fragKey
	until [recentFrags]int64 // unix nanoseconds; 0 is a free slot
	next  int
}

func (t *fragTable) add(k fragKey, now int64) {
	i := slices.Index(t.keys[:], k)
	if i < 0 || t.until[i] <= now {
		i = t.next
		t.next = (t.next + 1) % recentFrags
	}
	t.keys[i], t.until[i] = k, now+int64(fragTimeout)
}

func (t *fragTable) has(k fragKey, now int64) bool {
	for i := range t.keys {
		if t.keys[i] == k && t.until[i] > now {
			return true
		}
	}
	return false
}

// verifier checks the frames one client sends against its grant. check is
// called from one goroutine only (the session's sending pump), received
// from one other (the receiving pump); setGrant may be called
// concurrently with both.
type verifier struct {
	mac      [6]byte
	ip4, ip6 []netip.Addr
	ports    atomic.Pointer[portSet]
	now      func() time.Time

	sentFrags fragTable // datagrams the client sent
	recvFrags fragTable // datagrams passed to the client
}

// newVerifier checks frames from mac against grant; the grant's addresses
// are fixed for the session, its ports may grow (setGrant).
func newVerifier(mac [6]byte, grant link.FilterSpec) *verifier {
	v := &verifier{mac: mac, ip4: grant.IPv4, ip6: grant.IPv6, now: time.Now}
	v.ports.Store(newPortSet(grant))
	return v
}

// setGrant replaces the ports the client holds.
func (v *verifier) setGrant(grant link.FilterSpec) { v.ports.Store(newPortSet(grant)) }

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// check returns nil if the client may send b, a virtio-net header and an
// Ethernet frame.
func (v *verifier) check(b []byte) error {
	if len(b) < vnetHdrLen+ethHdrLen {
		return errShort
	}
	vh, f := b[:vnetHdrLen], b[vnetHdrLen:]
	if [6]byte(f[6:12]) != v.mac {
		return errSrcMAC
	}
	switch be16(f[12:]) {
	case etherTypeARP:
		return v.checkARP(vh, f[ethHdrLen:])
	case etherTypeIPv4:
		return v.checkIPv4(vh, f[ethHdrLen:])
	case etherTypeIPv6:
		return v.checkIPv6(vh, f[ethHdrLen:])
	}
	return errEtherType
}

// received reports whether a frame the packet filter admitted goes on to
// the client: all do but later IPv4 fragments, which carry no ports and
// pass only when their datagram's first fragment passed (the filter,
// which keeps no state, admits them by address alone).
func (v *verifier) received(b []byte) bool {
	if len(b) < vnetHdrLen+ethHdrLen+ipv4HdrLen || be16(b[vnetHdrLen+12:]) != etherTypeIPv4 {
		return true
	}
	ip := b[vnetHdrLen+ethHdrLen:]
	frag := be16(ip[6:])
	switch {
	case frag&0x1fff != 0:
		return v.recvFrags.has(fragKeyOf(ip), v.now().UnixNano())
	case frag&0x2000 != 0:
		v.recvFrags.add(fragKeyOf(ip), v.now().UnixNano())
	}
	return true
}

// checkVnet allows a checksum request only at the checksum field of the
// packet's own transport header, and segmentation only of TCP: anything
// else would let the kernel write over headers after they were checked.
func checkVnet(vh []byte, l3Len int, proto byte, v6 bool) error {
	flags, gso := vh[0], vh[1]&^vnetGSOECN
	csumStart := int(binary.LittleEndian.Uint16(vh[6:]))
	csumOffset := int(binary.LittleEndian.Uint16(vh[8:]))
	if flags&^(vnetNeedsCsum|vnetDataValid) != 0 {
		return errVnet
	}
	if flags&vnetNeedsCsum != 0 {
		want := map[byte]int{protoTCP: 16, protoUDP: 6, protoICMP: 2, protoICMPv6: 2}[proto]
		if want == 0 || csumStart != ethHdrLen+l3Len || csumOffset != want {
			return errVnet
		}
	}
	switch gso {
	case vnetGSONone:
	case vnetGSOTCPv4, vnetGSOTCPv6:
		if proto != protoTCP || (gso == vnetGSOTCPv6) != v6 || flags&vnetNeedsCsum == 0 {
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
	if be16(p[0:]) != 1 || be16(p[2:]) != etherTypeIPv4 || p[4] != 6 || p[5] != 4 ||
		[6]byte(p[8:14]) != v.mac || !slices.Contains(v.ip4, netip.AddrFrom4([4]byte(p[14:18]))) {
		return errARP
	}
	return nil
}

func (v *verifier) checkIPv4(vh, p []byte) error {
	if len(p) < ipv4HdrLen || p[0]>>4 != 4 {
		return errIPHeader
	}
	if ihl := int(p[0]&0x0f) * 4; ihl < ipv4HdrLen {
		return errIPHeader
	} else if ihl > ipv4HdrLen {
		return errIPOptions
	}
	if !slices.Contains(v.ip4, netip.AddrFrom4([4]byte(p[12:16]))) {
		return errSrcIP
	}
	// The kernel sends a packet socket's IPv4 header as it is written,
	// and a stack always fills in its checksum.
	if checksum.Checksum(p[:ipv4HdrLen], 0) != 0xffff {
		return errChecksum
	}
	proto := p[9]
	frag := be16(p[6:])
	if frag&0x1fff != 0 {
		// A later fragment: its ports were in the first, which passed
		// if the client sent the same datagram (source, destination,
		// protocol, identification) a moment ago.
		if err := noOffload(vh); err != nil {
			return err
		}
		if !v.sentFrags.has(fragKeyOf(p), v.now().UnixNano()) {
			return errFragment
		}
		return nil
	}
	if err := checkVnet(vh, ipv4HdrLen, proto, false); err != nil {
		return err
	}
	if err := v.checkL4(proto, p[ipv4HdrLen:], false, false); err != nil {
		return err
	}
	if frag&0x2000 != 0 { // more fragments: remember the datagram
		// Its TCP or UDP checksum covers fragments not yet sent.
		v.sentFrags.add(fragKeyOf(p), v.now().UnixNano())
		return nil
	}
	if kernelSums(vh) {
		return nil
	}
	total := int(be16(p[2:]))
	if total < ipv4HdrLen || total > len(p) {
		return errIPHeader
	}
	return checkTransportSum(proto, p[12:16], p[16:20], p[ipv4HdrLen:total], false)
}

// kernelSums reports whether the virtio-net header leaves the transport
// checksum to the kernel (a checksum request or segmentation, which
// checkVnet confined to the packet's own checksum field).
func kernelSums(vh []byte) bool { return vh[0]&vnetNeedsCsum != 0 || vh[1] != vnetGSONone }

// checkTransportSum refuses a TCP or UDP segment whose checksum is wrong.
// A stack never sends a bad checksum, so such a frame is forged or broken,
// and the peer would only count and drop it: it does not go on the wire.
// A UDP checksum of 0 over IPv4 means none (RFC 768).
func checkTransportSum(proto byte, src, dst, seg []byte, v6 bool) error {
	switch proto {
	case protoTCP:
		if len(seg) < 20 {
			return errShort
		}
	case protoUDP:
		if len(seg) < 8 {
			return errShort
		}
		if !v6 && be16(seg[6:]) == 0 {
			return nil
		}
	default:
		return nil
	}
	var pseudo [40]byte
	n := copy(pseudo[:], src)
	n += copy(pseudo[n:], dst)
	pseudo[n+1] = proto
	binary.BigEndian.PutUint16(pseudo[n+2:], uint16(len(seg)))
	if checksum.Checksum(seg, checksum.Checksum(pseudo[:n+4], 0)) != 0xffff {
		return errChecksum
	}
	return nil
}

func (v *verifier) checkIPv6(vh, p []byte) error {
	if len(p) < ipv6HdrLen || p[0]>>4 != 6 {
		return errIPHeader
	}
	next := p[6]
	if next != protoTCP && next != protoUDP && next != protoICMPv6 {
		// Every extension header is refused: a routing header would
		// have the peer forward the packet, fragments would carry
		// ports the check never saw.
		switch next {
		case 0, 43, 44, 50, 51, 60, 135, 139, 140:
			return errExtHeader
		}
		return errProto
	}
	l4 := p[ipv6HdrLen:]
	src := netip.AddrFrom16([16]byte(p[8:24]))
	unspecified := src.IsUnspecified()
	if !unspecified && !slices.Contains(v.ip6, src) {
		return errSrcIP
	}
	if next == protoICMPv6 {
		// Neighbour discovery parses options up to the payload's end,
		// which must be within the frame.
		n := int(be16(p[4:]))
		if n > len(l4) {
			return errIPHeader
		}
		l4 = l4[:n]
	}
	if unspecified && (next != protoICMPv6 || len(l4) < 1 || l4[0] != icmp6NeighborSol) {
		// Only duplicate address detection comes from ::.
		return errSrcIP
	}
	if err := checkVnet(vh, ipv6HdrLen, next, true); err != nil {
		return err
	}
	if err := v.checkL4(next, l4, true, unspecified); err != nil {
		return err
	}
	if next == protoICMPv6 || kernelSums(vh) {
		return nil
	}
	n := int(be16(p[4:]))
	if n > len(l4) {
		return errIPHeader
	}
	return checkTransportSum(next, p[8:24], p[24:40], l4[:n], true)
}

// checkL4 checks the transport header: the source port of TCP and UDP, the
// type of ICMP, what an ICMP error quotes, and neighbour discovery.
func (v *verifier) checkL4(proto byte, l4 []byte, v6, unspecified bool) error {
	switch proto {
	case protoTCP, protoUDP:
		if len(l4) < 4 {
			return errShort
		}
		if !v.ports.Load().has(proto, be16(l4)) {
			return errSrcPort
		}
		return nil
	case protoICMP:
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
	case protoICMPv6:
		if !v6 {
			return errProto
		}
		if len(l4) < icmpErrorQuote {
			return errShort
		}
		switch l4[0] {
		case icmp6EchoRequest:
			return nil
		case icmp6RouterSol, icmp6NeighborSol, icmp6NeighborAdv:
			return v.checkNDP(l4, unspecified)
		case 1, 2, 3, 4: // unreachable, too big, time exceeded, parameter problem
			return v.checkQuote6(l4[icmpErrorQuote:])
		case 130, 131, 132, 134, 137, 143: // MLD, router advertisement, redirect
			return errNDPType
		}
		return errICMPType
	}
	return errProto
}

// checkNDP: neighbour discovery (RFC 4861) only about the client's own
// addresses, naming only the interface's MAC. A solicitation may ask for
// any neighbour (that is how the client finds its peers) but only with
// the interface's MAC as its source link-layer address; from :: (duplicate
// address detection) only for the client's own address and with no
// link-layer address, as RFC 4861 7.1.1 requires. An advertisement is only
// for the client's own address. Router solicitations name only the MAC;
// advertisements of routers, redirects and MLD reports are not the
// client's to send: it is no router, and the kernel manages the
// interface's multicast groups.
func (v *verifier) checkNDP(m []byte, unspecified bool) error {
	typ := m[0]
	opts := m[8:] // router solicitation: 4 reserved bytes after the header
	allowed := []byte{ndpSourceLinkAddr}
	if typ != icmp6RouterSol {
		if len(m) < 24 {
			return errShort
		}
		target := netip.AddrFrom16([16]byte(m[8:24]))
		opts = m[24:]
		ours := slices.Contains(v.ip6, target)
		switch {
		case typ == icmp6NeighborAdv:
			if !ours {
				return errIPv6Target
			}
			allowed = []byte{ndpTargetLinkAddr}
		case unspecified:
			if !ours {
				return errDAD
			}
			allowed = []byte{ndpNonce}
		default:
			allowed = []byte{ndpSourceLinkAddr, ndpNonce}
		}
	}
	for len(opts) > 0 {
		if len(opts) < 8 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return errNDPOption
		}
		o := opts[:int(opts[1])*8]
		opts = opts[len(o):]
		if !slices.Contains(allowed, o[0]) {
			return errNDPOption
		}
		if (o[0] == ndpSourceLinkAddr || o[0] == ndpTargetLinkAddr) && (o[1] != 1 || [6]byte(o[2:8]) != v.mac) {
			return errNDPOption
		}
	}
	return nil
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
	if !v.ports.Load().has(q[9], be16(q[ihl+2:])) {
		return errICMPQuote
	}
	return nil
}

func (v *verifier) checkQuote6(q []byte) error {
	if len(q) < ipv6HdrLen+4 || q[0]>>4 != 6 || !slices.Contains(v.ip6, netip.AddrFrom16([16]byte(q[24:40]))) {
		return errICMPQuote
	}
	if !v.ports.Load().has(q[6], be16(q[ipv6HdrLen+2:])) {
		return errICMPQuote
	}
	return nil
}
