package mutate

import (
	"encoding/binary"
	"math"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// frame is one frame's bytes and the header fields rules look at. The
// offsets index b: the IP header at ipOff, the transport header at l4Off,
// the IP packet ends at end (an Ethernet frame may carry padding after it).
type frame struct {
	b                 []byte
	ipOff, l4Off, end int
	v4                bool
	proto             uint8 // transport protocol number; 0 when unknown (a later fragment, an extension header)
	src, dst          netip.Addr
	sport, dport      uint16
	// TCP only.
	flags    uint8
	seq, ack uint32
	tcpLen   int // header length
}

func (f *frame) isTCP() bool { return f.proto == uint8(header.TCPProtocolNumber) && f.tcpLen > 0 }

// payloadLen is the TCP payload's length.
func (f *frame) payloadLen() int { return f.end - f.l4Off - f.tcpLen }

// segLen is the sequence space the TCP segment takes: payload, SYN, FIN.
func (f *frame) segLen() uint32 {
	n := uint32(f.payloadLen())
	if f.flags&uint8(header.TCPFlagSyn) != 0 {
		n++
	}
	if f.flags&uint8(header.TCPFlagFin) != 0 {
		n++
	}
	return n
}

// parseResult says what parseFrame found.
type parseResult int

const (
	notIP     parseResult = iota // ARP and the like: rules do not see it
	malformed                    // says IP but its headers do not hold together
	parsed
)

// headerBytes is as much of a frame as parseFrame needs: the longest IP
// header (60 bytes; IPv6's is 40) and the longest TCP header (60).
const headerBytes = 120

// parseFrame reads b, whose network header starts at linkLen (0 or an
// Ethernet header's 14 bytes). b may be the first linkLen+headerBytes of a
// frame of size bytes: the fields are read from it, the lengths checked
// against size.
func parseFrame(b []byte, linkLen, size int) (frame, parseResult) {
	f := frame{b: b, ipOff: linkLen}
	if len(b) < linkLen+1 {
		return f, notIP
	}
	if linkLen == header.EthernetMinimumSize {
		switch tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(b[12:14])) {
		case header.IPv4ProtocolNumber, header.IPv6ProtocolNumber:
		default:
			return f, notIP
		}
	}
	nw := b[linkLen:]
	switch header.IPVersion(nw) {
	case header.IPv4Version:
		ip := header.IPv4(nw)
		if len(nw) < header.IPv4MinimumSize {
			return f, malformed
		}
		hl, tl := int(ip.HeaderLength()), int(ip.TotalLength())
		if hl < header.IPv4MinimumSize || tl < hl || tl > size-linkLen || hl > len(nw) {
			return f, malformed
		}
		f.v4 = true
		f.l4Off, f.end = linkLen+hl, linkLen+tl
		f.src, _ = netip.AddrFromSlice(ip.SourceAddressSlice())
		f.dst, _ = netip.AddrFromSlice(ip.DestinationAddressSlice())
		if ip.FragmentOffset() != 0 {
			return f, parsed // a later fragment: no transport header
		}
		f.proto = ip.Protocol()
	case header.IPv6Version:
		if len(nw) < header.IPv6MinimumSize {
			return f, malformed
		}
		ip := header.IPv6(nw)
		pl := int(ip.PayloadLength())
		if header.IPv6MinimumSize+pl > size-linkLen {
			return f, malformed
		}
		f.l4Off, f.end = linkLen+header.IPv6MinimumSize, linkLen+header.IPv6MinimumSize+pl
		f.src, _ = netip.AddrFromSlice(ip.SourceAddressSlice())
		f.dst, _ = netip.AddrFromSlice(ip.DestinationAddressSlice())
		switch nh := ip.NextHeader(); tcpip.TransportProtocolNumber(nh) {
		case header.TCPProtocolNumber, header.UDPProtocolNumber, header.ICMPv6ProtocolNumber:
			f.proto = nh
		}
	default:
		return f, malformed
	}
	l4 := b[f.l4Off:min(f.end, len(b))]
	switch tcpip.TransportProtocolNumber(f.proto) {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return f, malformed
		}
		t := header.TCP(l4)
		hl := int(t.DataOffset())
		if hl < header.TCPMinimumSize || hl > f.end-f.l4Off || hl > len(l4) {
			return f, malformed
		}
		f.sport, f.dport = t.SourcePort(), t.DestinationPort()
		f.flags, f.seq, f.ack, f.tcpLen = uint8(t.Flags()), t.SequenceNumber(), t.AckNumber(), hl
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			return f, malformed
		}
		u := header.UDP(l4)
		f.sport, f.dport = u.SourcePort(), u.DestinationPort()
	}
	return f, parsed
}

// matches tells whether the frame is one r selects.
func (r *Rule) matches(f *frame) bool {
	switch r.Proto {
	case TCP:
		if !f.isTCP() {
			return false
		}
	case UDP:
		if f.proto != uint8(header.UDPProtocolNumber) {
			return false
		}
	case ICMP:
		if f.proto != uint8(header.ICMPv4ProtocolNumber) && f.proto != uint8(header.ICMPv6ProtocolNumber) {
			return false
		}
		if f.v4 != (f.proto == uint8(header.ICMPv4ProtocolNumber)) {
			return false
		}
	}
	if r.Src.IsValid() && !r.Src.Contains(f.src) || r.Dst.IsValid() && !r.Dst.Contains(f.dst) {
		return false
	}
	if !r.Sport.match(uint32(f.sport)) || !r.Dport.match(uint32(f.dport)) {
		return false
	}
	if r.Port.Set && !r.Port.match(uint32(f.sport)) && !r.Port.match(uint32(f.dport)) {
		return false
	}
	if f.flags&r.Flags != r.Flags || f.flags&r.FlagsClear != 0 {
		return false
	}
	return r.Seq.match(f.seq)
}

// tcp is the frame's TCP header and payload; only for a whole frame.
func (f *frame) tcp() header.TCP { return header.TCP(f.b[f.l4Off:f.end]) }

// tcpHeader is the frame's TCP header, options included, which parseFrame
// found within b also when b holds only the frame's first bytes.
func (f *frame) tcpHeader() header.TCP { return header.TCP(f.b[f.l4Off : f.l4Off+f.tcpLen]) }

// rewrite sets the fields of r.Rewrites that apply to the frame and
// reports whether it changed anything. Checksums are left to fixChecksums.
func (f *frame) rewrite(fields []Field, windowShift uint) (ipChanged, l4Changed bool) {
	nw := f.b[f.ipOff:f.end]
	for _, fd := range fields {
		switch fd.Name {
		case "ttl":
			if f.v4 {
				header.IPv4(nw).SetTTL(uint8(fd.Value))
			} else {
				header.IPv6(nw).SetHopLimit(uint8(fd.Value))
			}
			ipChanged = true
		case "tos":
			if f.v4 {
				header.IPv4(nw).SetTOS(uint8(fd.Value), 0)
			} else {
				ip := header.IPv6(nw)
				_, label := ip.TOS()
				ip.SetTOS(uint8(fd.Value), label)
			}
			ipChanged = true
		case "window":
			if f.isTCP() {
				f.tcp().SetWindowSize(uint16(min(fd.Value>>windowShift, math.MaxUint16)))
				l4Changed = true
			}
		default:
			if bit := flagBit(fd.Name); bit != 0 && f.isTCP() {
				if fd.Value == 1 {
					f.flags |= bit
				} else {
					f.flags &^= bit
				}
				f.tcp().SetFlags(f.flags)
				l4Changed = true
			}
		}
	}
	return ipChanged, l4Changed
}

// fixChecksums recomputes the IPv4 header checksum and the TCP or UDP
// checksum over the pseudo-header, header and payload.
func (f *frame) fixChecksums(ip, l4 bool) {
	if ip && f.v4 {
		h := header.IPv4(f.b[f.ipOff:f.end])
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
	}
	if !l4 {
		return
	}
	seg := f.b[f.l4Off:f.end]
	var proto tcpip.TransportProtocolNumber
	var at int
	switch tcpip.TransportProtocolNumber(f.proto) {
	case header.TCPProtocolNumber:
		proto, at = header.TCPProtocolNumber, header.TCPChecksumOffset
	case header.UDPProtocolNumber:
		proto, at = header.UDPProtocolNumber, 6
	default:
		return
	}
	src, dst := tcpip.AddrFromSlice(f.src.AsSlice()), tcpip.AddrFromSlice(f.dst.AsSlice())
	seg[at], seg[at+1] = 0, 0
	sum := ^checksum.Checksum(seg, header.PseudoHeaderChecksum(proto, src, dst, uint16(len(seg))))
	if proto == header.UDPProtocolNumber && sum == 0 {
		sum = 0xffff // zero means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(seg[at:], sum)
}

// pureAck returns a copy of the TCP frame f without its payload, with only
// the ACK flag and ack number ack, checksums computed: the ACKs a
// misbehaving receiver adds.
func (f *frame) pureAck(ack uint32) []byte {
	n := f.l4Off + f.tcpLen
	b := make([]byte, n)
	copy(b, f.b[:n])
	g := *f
	g.b, g.end = b, n
	if f.v4 {
		header.IPv4(b[f.ipOff:]).SetTotalLength(uint16(n - f.ipOff))
	} else {
		header.IPv6(b[f.ipOff:]).SetPayloadLength(uint16(n - f.l4Off))
	}
	t := g.tcp()
	t.SetFlags(uint8(header.TCPFlagAck))
	t.SetAckNumber(ack)
	g.fixChecksums(true, true)
	return b
}

// rst returns a TCP reset answering f in the given direction: toDst
// resets f's receiver as if f's sender had reset (seq after f's data);
// otherwise it resets f's sender as if the receiver had (seq f's ack).
// The link header, if any, is f's with the addresses swapped for the
// reset going back.
func (f *frame) rst(toDst bool) []byte {
	hl := f.l4Off - f.ipOff
	n := f.l4Off + header.TCPMinimumSize
	b := make([]byte, n)
	copy(b, f.b[:f.l4Off])
	if f.ipOff == header.EthernetMinimumSize && !toDst {
		copy(b[0:6], f.b[6:12])
		copy(b[6:12], f.b[0:6])
	}
	src, dst, sport, dport, seq := f.src, f.dst, f.sport, f.dport, f.seq+f.segLen()
	if !toDst {
		src, dst, sport, dport, seq = f.dst, f.src, f.dport, f.sport, f.ack
	}
	if f.v4 {
		ip := header.IPv4(b[f.ipOff:])
		ip.SetTotalLength(uint16(hl + header.TCPMinimumSize))
		ip.SetSourceAddress(tcpip.AddrFromSlice(src.AsSlice()))
		ip.SetDestinationAddress(tcpip.AddrFromSlice(dst.AsSlice()))
		ip.SetTTL(64)
	} else {
		ip := header.IPv6(b[f.ipOff:])
		ip.SetPayloadLength(header.TCPMinimumSize)
		ip.SetSourceAddress(tcpip.AddrFromSlice(src.AsSlice()))
		ip.SetDestinationAddress(tcpip.AddrFromSlice(dst.AsSlice()))
		ip.SetHopLimit(64)
	}
	header.TCP(b[f.l4Off:]).Encode(&header.TCPFields{
		SrcPort: sport, DstPort: dport, SeqNum: seq,
		DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagRst,
	})
	g := frame{b: b, ipOff: f.ipOff, l4Off: f.l4Off, end: n, v4: f.v4, proto: f.proto, src: src, dst: dst}
	g.fixChecksums(true, true)
	return b
}
