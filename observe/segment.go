package observe

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack/netstack"
)

// Segment is the TCP header of one frame, as the trace and the plots
// need it. Sequence numbers are raw.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Len      int // payload bytes, from the IP header (a capture may hold fewer)
	Win      uint16
	Flags    header.TCPFlags
	SACK     [][2]uint32 // SACK blocks [left, right)

	// SYN options; MSS 0 and WScale -1 mean absent.
	MSS    int
	WScale int
	SACKOK bool

	// Timestamps option, if present.
	TS           bool
	TSVal, TSEcr uint32
}

// FlagString spells the flags in the order F S R P A U E C.
func FlagString(f header.TCPFlags) string {
	const letters = "FSRPAUEC"
	var b [8]byte
	n := 0
	for i := range 8 {
		if f&(1<<i) != 0 {
			b[n] = letters[i]
			n++
		}
	}
	return string(b[:n])
}

// ParseEthernetTCP decodes an Ethernet frame carrying IPv4 or IPv6 and
// TCP. ok is false for anything else, and for frames too short or
// malformed to hold a whole TCP header: the caller counts those.
func ParseEthernetTCP(frame []byte) (Segment, bool) {
	if len(frame) < header.EthernetMinimumSize {
		return Segment{}, false
	}
	eth := header.Ethernet(frame)
	switch eth.Type() {
	case header.IPv4ProtocolNumber, header.IPv6ProtocolNumber:
		return ParseIPTCP(frame[header.EthernetMinimumSize:])
	}
	return Segment{}, false
}

// ParseIPTCP decodes an IPv4 or IPv6 packet carrying TCP (first fragments
// and unfragmented packets only; no IPv6 extension headers).
func ParseIPTCP(pkt []byte) (Segment, bool) {
	var s Segment
	var tcpStart, ipEnd int
	switch {
	case len(pkt) >= header.IPv4MinimumSize && pkt[0]>>4 == 4:
		ip := header.IPv4(pkt)
		hl := int(ip.HeaderLength())
		if hl < header.IPv4MinimumSize || hl > len(pkt) || ip.TransportProtocol() != header.TCPProtocolNumber || ip.FragmentOffset() != 0 {
			return s, false
		}
		s.Src = netstack.NetipAddrPort(ip.SourceAddress(), 0)
		s.Dst = netstack.NetipAddrPort(ip.DestinationAddress(), 0)
		tcpStart, ipEnd = hl, int(ip.TotalLength())
		if ipEnd == 0 { // a TSO super-frame may leave it to the device
			ipEnd = len(pkt)
		}
	case len(pkt) >= header.IPv6MinimumSize && pkt[0]>>4 == 6:
		ip := header.IPv6(pkt)
		if ip.TransportProtocol() != header.TCPProtocolNumber {
			return s, false
		}
		s.Src = netstack.NetipAddrPort(ip.SourceAddress(), 0)
		s.Dst = netstack.NetipAddrPort(ip.DestinationAddress(), 0)
		tcpStart, ipEnd = header.IPv6MinimumSize, header.IPv6MinimumSize+int(ip.PayloadLength())
	default:
		return s, false
	}
	if len(pkt) < tcpStart+header.TCPMinimumSize {
		return s, false
	}
	t := header.TCP(pkt[tcpStart:])
	off := int(t.DataOffset())
	if off < header.TCPMinimumSize || len(pkt) < tcpStart+off || ipEnd < tcpStart+off {
		return s, false
	}
	s.Src = netip.AddrPortFrom(s.Src.Addr(), t.SourcePort())
	s.Dst = netip.AddrPortFrom(s.Dst.Addr(), t.DestinationPort())
	s.Seq, s.Ack = t.SequenceNumber(), t.AckNumber()
	s.Win = t.WindowSize()
	s.Flags = t.Flags()
	s.Len = ipEnd - tcpStart - off
	s.WScale = -1
	parseOptions(&s, pkt[tcpStart+header.TCPMinimumSize:tcpStart+off])
	return s, true
}

// parseOptions reads MSS, window scale, SACK-permitted, SACK blocks and
// timestamps; it stops at the first malformed option.
func parseOptions(s *Segment, b []byte) {
	for i := 0; i < len(b); {
		kind := b[i]
		if kind == header.TCPOptionEOL {
			return
		}
		if kind == header.TCPOptionNOP {
			i++
			continue
		}
		if i+1 >= len(b) {
			return
		}
		l := int(b[i+1])
		if l < 2 || i+l > len(b) {
			return
		}
		v := b[i+2 : i+l]
		switch kind {
		case header.TCPOptionMSS:
			if l == 4 {
				s.MSS = int(binary.BigEndian.Uint16(v))
			}
		case header.TCPOptionWS:
			if l == 3 {
				s.WScale = int(v[0])
			}
		case header.TCPOptionSACKPermitted:
			s.SACKOK = l == 2
		case header.TCPOptionSACK:
			for j := 0; j+8 <= len(v); j += 8 {
				s.SACK = append(s.SACK, [2]uint32{binary.BigEndian.Uint32(v[j:]), binary.BigEndian.Uint32(v[j+4:])})
			}
		case header.TCPOptionTS:
			if l == 10 {
				s.TS = true
				s.TSVal, s.TSEcr = binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])
			}
		}
		i += l
	}
}
