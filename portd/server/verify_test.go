package server

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// frameCase is a frame a client sends and what the check says of it.
type frameCase struct {
	name  string
	frame []byte
	want  error
}

// frameCases are frames a client of testGrant sends, in order (a later
// fragment follows its first), and the check's verdicts: every attack the
// check must stop, and the frames a stack sends that it must pass.
func frameCases() []frameCase {
	mac := testMAC
	other := [6]byte{0x02, 0, 0, 0, 0, 0x09}
	me4, me6 := netip.MustParseAddr("10.79.0.2"), netip.MustParseAddr("fd79::2")
	peer4, peer6 := netip.MustParseAddr("10.79.0.1"), netip.MustParseAddr("fd79::1")
	ap := netip.AddrPortFrom

	// A frame the peer sent us, as an ICMP error quotes it.
	quoted := func(dport uint16) []byte {
		return udpDatagram(ap(peer4, 5353), ap(me4, dport), []byte("q"))[:28]
	}
	icmp6 := func(src netip.Addr, typ byte, body []byte) []byte { return icmp6Frame(mac, src, peer6, typ, body) }
	frag := func(off uint16, id uint16, more bool) []byte {
		return fragFrame(mac, ap(me4, 40000), ap(peer4, 53), off, id, more)
	}
	tentative := netip.MustParseAddr("fd79::77") // a peer's new address, in duplicate address detection
	tcpFrame := TCPFrame(mac, ap(me4, 40000), ap(peer4, 80), 0x10)

	return []frameCase{
		{"udp from a held port", UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), []byte("x")), nil},
		{"udp over ipv6", UDPFrame(mac, ap(me6, 40000), ap(peer6, 53), []byte("x")), nil},
		{"tcp from a listening port", TCPFrame(mac, ap(me4, 8080), ap(peer4, 5555), 0x12), nil},
		{"tcp with checksum offload", WithVnet(tcpFrame, vnetNeedsCsum, 0, 34, 16), nil},
		{"tcp super-frame", WithVnet(tcpFrame, vnetNeedsCsum, vnetGSOTCPv4, 34, 16), nil},
		{"arp from us", arpFrame(mac, mac, me4), nil},
		{"icmp echo request", ICMPErrorFrame(mac, me4, peer4, 8, nil), nil},
		{"port unreachable for our port", ICMPErrorFrame(mac, me4, peer4, 3, quoted(40000)), nil},
		{"icmpv6 echo request", icmp6(me6, 128, nil), nil},
		{"neighbour advertisement of ours", icmp6(me6, 136, ndp(me6)), nil},
		{"neighbour advertisement of ours with our MAC", icmp6(me6, 136, ndp(me6, lla(2, mac))), nil},
		{"neighbour solicitation for a peer", icmp6(me6, 135, ndp(peer6)), nil},
		{"neighbour solicitation for a peer with our MAC", icmp6(me6, 135, ndp(peer6, lla(1, mac))), nil},
		{"duplicate address detection of ours", icmp6(netip.IPv6Unspecified(), 135, ndp(me6)), nil},
		{"duplicate address detection of ours with a nonce", icmp6(netip.IPv6Unspecified(), 135, ndp(me6, []byte{14, 1, 1, 2, 3, 4, 5, 6})), nil},
		{"router solicitation with our MAC", icmp6(me6, 133, lla(1, mac)), nil},
		{"first fragment then the rest", frag(0, 7, true), nil},
		{"later fragment of it", frag(64, 7, false), nil},
		{"udp over ipv4 without a checksum", noUDPSum(UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), []byte("x"))), nil},
		{"bad tcp checksum the kernel fills in", WithVnet(WithBadL4Sum(tcpFrame), vnetNeedsCsum, 0, 34, 16), nil},

		{"short", make([]byte, 12), errShort},
		{"forged MAC", UDPFrame(other, ap(me4, 40000), ap(peer4, 53), nil), errSrcMAC},
		{"forged address", UDPFrame(mac, ap(netip.MustParseAddr("10.79.0.77"), 40000), ap(peer4, 53), nil), errSrcIP},
		{"forged ipv6 address", UDPFrame(mac, ap(peer6, 40000), ap(peer6, 53), nil), errSrcIP},
		{"port not held", UDPFrame(mac, ap(me4, 22), ap(peer4, 53), nil), errSrcPort},
		{"udp port held only for tcp", UDPFrame(mac, ap(me4, 8080), ap(peer4, 53), nil), errSrcPort},
		{"tcp reset from the kernel's port", TCPFrame(mac, ap(me4, 22), ap(peer4, 5555), 0x04), errSrcPort},
		{"checksum written over the source port", WithVnet(tcpFrame, vnetNeedsCsum, 0, 34, 0), errVnet},
		{"checksum start in the IP header", WithVnet(tcpFrame, vnetNeedsCsum, 0, 14, 16), errVnet},
		{"udp segmentation", WithVnet(UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), nil), vnetNeedsCsum, 3, 34, 6), errVnet},
		{"ipv6 segmentation of ipv4", WithVnet(tcpFrame, vnetNeedsCsum, vnetGSOTCPv6, 34, 16), errVnet},
		{"arp for someone else's address", arpFrame(mac, mac, peer4), errARP},
		{"arp with another MAC inside", arpFrame(mac, other, me4), errARP},
		{"port unreachable for the kernel's port", ICMPErrorFrame(mac, me4, peer4, 3, quoted(22)), errICMPQuote},
		{"icmp redirect", ICMPErrorFrame(mac, me4, peer4, 5, quoted(40000)), errICMPType},
		{"icmp echo reply", ICMPErrorFrame(mac, me4, peer4, 0, nil), errICMPType},
		{"neighbour advertisement of another address", icmp6(me6, 136, ndp(peer6)), errIPv6Target},
		{"neighbour advertisement of ours naming another MAC", icmp6(me6, 136, ndp(me6, lla(2, other))), errNDPOption},
		{"neighbour solicitation naming another MAC", icmp6(me6, 135, ndp(peer6, lla(1, other))), errNDPOption},
		{"neighbour solicitation with a target link-layer option", icmp6(me6, 135, ndp(peer6, lla(2, mac))), errNDPOption},
		{"neighbour solicitation with an option of length 0", icmp6(me6, 135, ndp(peer6, []byte{1, 0, 0, 0, 0, 0, 0, 0})), errNDPOption},
		{"neighbour solicitation with an option past its end", icmp6(me6, 135, ndp(peer6, []byte{1, 2, 0, 0, 0, 0, 0, 0})), errNDPOption},
		{"neighbour solicitation with a redirect option", icmp6(me6, 135, ndp(peer6, make([]byte, 8))), errNDPOption},
		{"duplicate address detection of a peer's address", icmp6(netip.IPv6Unspecified(), 135, ndp(tentative)), errDAD},
		{"duplicate address detection with a link-layer option", icmp6(netip.IPv6Unspecified(), 135, ndp(me6, lla(1, mac))), errNDPOption},
		{"neighbour advertisement from ::", icmp6(netip.IPv6Unspecified(), 136, ndp(me6)), errSrcIP},
		{"router solicitation naming another MAC", icmp6(me6, 133, lla(1, other)), errNDPOption},
		{"router advertisement", icmp6(me6, 134, make([]byte, 8)), errNDPType},
		{"redirect", icmp6(me6, 137, make([]byte, 32)), errNDPType},
		{"mld report", icmp6(me6, 143, make([]byte, 8)), errNDPType},
		{"icmpv6 payload length past the frame", shortenIPv6Payload(icmp6(me6, 135, ndp(peer6))), errIPHeader},
		{"later fragment of nothing", frag(64, 9, false), errFragment},
		{"later fragment of it to another host", fragFrame(mac, ap(me4, 40000), ap(netip.MustParseAddr("10.79.0.9"), 53), 64, 7, false), errFragment},
		{"later fragment of it as tcp", withProto(frag(64, 7, false), protoTCP), errFragment},
		{"ipv4 source route", withIPv4Options(UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), []byte("x")), []byte{0x83, 7, 4, 10, 79, 0, 9, 0}), errIPOptions},
		{"ipv4 record route", withIPv4Options(UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), []byte("x")), []byte{7, 7, 4, 0, 0, 0, 0, 0}), errIPOptions},
		{"ipv6 routing header", ethFrame(mac, etherTypeIPv6, ipPacket(me6, peer6, 43, make([]byte, 24), -1)), errExtHeader},
		{"ipv6 fragment header", ethFrame(mac, etherTypeIPv6, ipPacket(me6, peer6, 44, make([]byte, 16), -1)), errExtHeader},
		{"ipv6 hop-by-hop", ethFrame(mac, etherTypeIPv6, ipPacket(me6, peer6, 0, make([]byte, 16), -1)), errExtHeader},
		{"ipx", ethFrame(mac, 0x8137, make([]byte, 40)), errEtherType},
		{"igmp", ethFrame(mac, etherTypeIPv4, ipPacket(me4, peer4, 2, make([]byte, 8), -1)), errProto},
		{"truncated ipv4", ethFrame(mac, etherTypeIPv4, []byte{0x45, 0}), errIPHeader},
		{"bad ipv4 header checksum", WithBadIPv4Sum(UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), []byte("x"))), errChecksum},
		{"bad udp checksum", WithBadL4Sum(UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), []byte("x"))), errChecksum},
		{"bad tcp checksum", WithBadL4Sum(tcpFrame), errChecksum},
		{"bad udp checksum over ipv6", WithBadL4Sum(UDPFrame(mac, ap(me6, 40000), ap(peer6, 53), []byte("x"))), errChecksum},
		{"bad tcp checksum over ipv6", WithBadL4Sum(TCPFrame(mac, ap(me6, 8080), ap(peer6, 5555), 0x12)), errChecksum},
		{"udp over ipv6 without a checksum", noUDPSum(UDPFrame(mac, ap(me6, 40000), ap(peer6, 53), []byte("x"))), errChecksum},
		{"ipv4 total length past the frame", withIPv4Sum(withTotalLength(UDPFrame(mac, ap(me4, 40000), ap(peer4, 53), []byte("x")), 200)), errIPHeader},
		{"ipv4 header shorter than 20 bytes", ethFrame(mac, etherTypeIPv4, append([]byte{0x44}, make([]byte, 30)...)), errIPHeader},
	}
}

func TestVerifier(t *testing.T) {
	v := newVerifier(testMAC, testGrant)
	for _, tc := range frameCases() {
		if err := v.check(tc.frame); !errors.Is(err, tc.want) {
			t.Errorf("%s: check = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestVerifierFragmentsExpire: a later fragment passes only within
// fragTimeout of its first, and the table of datagrams stays bounded: the
// oldest gives way.
func TestVerifierFragmentsExpire(t *testing.T) {
	clock := time.Unix(1000, 0)
	v := newVerifier(testMAC, testGrant)
	v.now = func() time.Time { return clock }
	me, peer := netip.AddrPortFrom(testGrant.IPv4[0], 40000), netip.MustParseAddrPort("10.79.0.1:53")
	if err := v.check(fragFrame(testMAC, me, peer, 0, 1, true)); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(fragTimeout - time.Second)
	if err := v.check(fragFrame(testMAC, me, peer, 64, 1, false)); err != nil {
		t.Errorf("a later fragment within the timeout: %v", err)
	}
	clock = clock.Add(2 * time.Second)
	if err := v.check(fragFrame(testMAC, me, peer, 64, 1, false)); !errors.Is(err, errFragment) {
		t.Errorf("a later fragment after the timeout: %v, want %v", err, errFragment)
	}
	for id := range uint16(recentFrags + 1) {
		v.check(fragFrame(testMAC, me, peer, 0, 100+id, true))
	}
	if err := v.check(fragFrame(testMAC, me, peer, 64, 100, false)); !errors.Is(err, errFragment) {
		t.Errorf("a later fragment of a datagram pushed out of the table: %v, want %v", err, errFragment)
	}
	if err := v.check(fragFrame(testMAC, me, peer, 64, 100+recentFrags, false)); err != nil {
		t.Errorf("a later fragment of the newest datagram: %v", err)
	}
}

// TestVerifierReceivedFragments: of the later fragments the packet filter
// admits by address alone, a client gets only those of datagrams whose
// first fragment (to its port) it got; before, it got every later
// fragment to the address, those of the host's and other users'
// datagrams too.
func TestVerifierReceivedFragments(t *testing.T) {
	v := newVerifier(testMAC, testGrant)
	peer, me := netip.MustParseAddrPort("10.79.0.1:53"), netip.AddrPortFrom(testGrant.IPv4[0], 40000)
	other := [6]byte{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"a later fragment of another's datagram", fragFrame(other, peer, me, 64, 5, false), false},
		{"a first fragment to our port", fragFrame(other, peer, me, 0, 7, true), true},
		{"a later fragment of it", fragFrame(other, peer, me, 64, 7, true), true},
		{"its last fragment", fragFrame(other, peer, me, 128, 7, false), true},
		{"a later fragment with its id from another source", fragFrame(other, netip.MustParseAddrPort("10.79.0.9:53"), me, 64, 7, false), false},
		{"a later fragment with its id as tcp", withProto(fragFrame(other, peer, me, 64, 7, false), protoTCP), false},
		{"a whole datagram", UDPFrame(other, peer, me, []byte("x")), true},
		{"an arp", ARPFrame(other, other, peer.Addr()), true},
	} {
		if got := v.received(c.frame); got != c.want {
			t.Errorf("%s: passed %v, want %v", c.name, got, c.want)
		}
	}
}

// FuzzFrameCheck feeds the frame check sequences of frames (each with a
// 2-byte length in front), seeded with every frame of frameCases, and
// holds what it passes to the rules of the grant as an independent reading
// of the frame states them: the interface's MAC; ARP only about the
// client's addresses; IPv4 without options, from a shared address, later
// fragments only of datagrams whose first fragment passed; IPv6 without
// extension headers, from a shared address or :: for duplicate address
// detection of the client's own address; TCP and UDP only from held ports;
// neighbour discovery naming only the interface's MAC and advertising only
// the client's addresses; no router advertisements or redirects.
func FuzzFrameCheck(f *testing.F) {
	var all []byte
	for _, c := range frameCases() {
		f.Add(lengthPrefixed(c.frame))
		all = append(all, lengthPrefixed(c.frame)...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, in []byte) {
		v := newVerifier(testMAC, testGrant)
		firsts := map[fragKey]bool{}
		for len(in) >= 2 {
			n := min(int(binary.BigEndian.Uint16(in)), len(in)-2)
			frame := in[2 : 2+n]
			in = in[2+n:]
			v.received(frame) // must not panic either
			if err := v.check(frame); err != nil {
				continue
			}
			if why := breaksGrant(frame, firsts); why != "" {
				t.Fatalf("the check passed a frame that %s: % x", why, frame)
			}
		}
	})
}

func lengthPrefixed(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

// breaksGrant says which rule of testGrant a frame breaks, if any; firsts
// are the first fragments passed so far.
func breaksGrant(b []byte, firsts map[fragKey]bool) string {
	if len(b) < 24 {
		return "is too short"
	}
	f := b[10:]
	if [6]byte(f[6:12]) != testMAC {
		return "comes from another MAC"
	}
	held := func(proto byte, port uint16) bool {
		if proto == protoTCP {
			return slices.Contains(testGrant.TCP, port)
		}
		return proto == protoUDP && slices.Contains(testGrant.UDP, port)
	}
	switch p := f[14:]; binary.BigEndian.Uint16(f[12:]) {
	case etherTypeARP:
		if len(p) < 28 || [6]byte(p[8:14]) != testMAC || netip.AddrFrom4([4]byte(p[14:18])) != testGrant.IPv4[0] {
			return "is ARP about another host"
		}
	case etherTypeIPv4:
		if len(p) < 20 || p[0] != 0x45 {
			return "has IPv4 options or a bad header"
		}
		if netip.AddrFrom4([4]byte(p[12:16])) != testGrant.IPv4[0] {
			return "comes from another IPv4 address"
		}
		key := fragKey{src: [4]byte(p[12:16]), dst: [4]byte(p[16:20]), id: binary.BigEndian.Uint16(p[4:]), proto: p[9]}
		if binary.BigEndian.Uint16(p[6:])&0x1fff != 0 {
			if !firsts[key] {
				return "is a later fragment of no datagram the client sent"
			}
			return ""
		}
		if binary.BigEndian.Uint16(p[6:])&0x2000 != 0 {
			firsts[key] = true
		}
		switch p[9] {
		case protoTCP, protoUDP:
			if len(p) < 24 || !held(p[9], binary.BigEndian.Uint16(p[20:])) {
				return "comes from a port the client does not hold"
			}
		case protoICMP:
		default:
			return "is of another protocol"
		}
	case etherTypeIPv6:
		if len(p) < 40 {
			return "has a short IPv6 header"
		}
		src, next, l4 := netip.AddrFrom16([16]byte(p[8:24])), p[6], p[40:]
		switch next {
		case protoTCP, protoUDP:
			if len(l4) < 4 || !held(next, binary.BigEndian.Uint16(l4)) {
				return "comes from a port the client does not hold"
			}
		case protoICMPv6:
			if len(l4) < 1 {
				return "is a short ICMPv6 message"
			}
			switch l4[0] {
			case 134, 137:
				return "is a router advertisement or a redirect"
			case 135, 136:
				if len(l4) < 24 {
					return "is a short neighbour discovery message"
				}
				target := netip.AddrFrom16([16]byte(l4[8:24]))
				if (l4[0] == 136 || src.IsUnspecified()) && target != testGrant.IPv6[0] {
					return "advertises or probes an address the client does not hold"
				}
				fallthrough
			case 133:
				start := 8
				if l4[0] != 133 {
					start = 24
				}
				n := int(binary.BigEndian.Uint16(p[4:]))
				for o := l4[start:min(n, len(l4))]; len(o) >= 8 && o[1] > 0 && int(o[1])*8 <= len(o); o = o[int(o[1])*8:] {
					if (o[0] == 1 || o[0] == 2) && [6]byte(o[2:8]) != testMAC {
						return "names another MAC in a neighbour discovery option"
					}
				}
			}
		default:
			return "has an extension header or another protocol"
		}
		if src.IsUnspecified() {
			if next != protoICMPv6 || l4[0] != 135 {
				return "comes from :: and is no duplicate address detection"
			}
		} else if src != testGrant.IPv6[0] {
			return "comes from another IPv6 address"
		}
	default:
		return "is of another EtherType"
	}
	return ""
}

// BenchmarkFrameCheck: the frame check's cost per frame a stack sends
// without a checksum request (its checksums are verified) and with one
// (they are left to the kernel).
func BenchmarkFrameCheck(b *testing.B) {
	ap := netip.AddrPortFrom
	me4, peer4 := netip.MustParseAddr("10.79.0.2"), netip.MustParseAddr("10.79.0.1")
	full := UDPFrame(testMAC, ap(me4, 40000), ap(peer4, 53), make([]byte, 1472))
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"udp-1500", full},
		{"udp-1500-offloaded", WithVnet(full, vnetNeedsCsum, 0, 34, 6)},
		{"tcp-ack", TCPFrame(testMAC, ap(me4, 40000), ap(peer4, 80), 0x10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := newVerifier(testMAC, testGrant)
			b.SetBytes(int64(len(bc.frame)))
			for b.Loop() {
				if err := v.check(bc.frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
