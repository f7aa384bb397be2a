package drill

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TCP header flag bits as on the wire (byte 13), and AE (the low bit of
// byte 12) as bit 8.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
	flagECE = 0x40
	flagCWR = 0x80
	flagAE  = 0x100
)

// flagBits turns a script's flag letters into bits.
func flagBits(s string) uint16 {
	var f uint16
	for _, c := range s {
		switch c {
		case 'F':
			f |= flagFIN
		case 'S':
			f |= flagSYN
		case 'R':
			f |= flagRST
		case 'P':
			f |= flagPSH
		case '.':
			f |= flagACK
		case 'U':
			f |= flagURG
		case 'E':
			f |= flagECE
		case 'W':
			f |= flagCWR
		case 'A':
			f |= flagAE
		}
	}
	return f
}

// flagString writes flag bits the way scripts do.
func flagString(f uint16) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint16
		c   byte
	}{{flagFIN, 'F'}, {flagSYN, 'S'}, {flagRST, 'R'}, {flagPSH, 'P'}, {flagURG, 'U'}, {flagECE, 'E'}, {flagCWR, 'W'}, {flagAE, 'A'}} {
		if f&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	if f&flagACK != 0 {
		b.WriteByte('.')
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// wire is an IP packet as it crossed the link, parsed.
type wire struct {
	raw   []byte
	v6    bool
	src   netip.Addr
	dst   netip.Addr
	tos   uint8
	ttl   uint8
	flow  uint32
	proto uint8

	sport, dport uint16

	// TCP
	seq, ack uint32
	flags    uint16
	win, urg uint16
	opts     []byte

	// ICMP
	icmpType, icmpCode uint8

	payload []byte
	at      int64 // when it was seen, µs of script time
}

var errNotIP = errors.New("not an IPv4 or IPv6 packet")

// parseWire parses an IP packet carrying TCP, UDP or ICMP. Packets of other
// protocols parse with only their IP fields.
func parseWire(b []byte) (*wire, error) {
	if len(b) < 1 {
		return nil, errNotIP
	}
	w := &wire{raw: b}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) {
			return nil, errors.New("truncated IPv4 packet")
		}
		w.src = netip.AddrFrom4(ip.SourceAddress().As4())
		w.dst = netip.AddrFrom4(ip.DestinationAddress().As4())
		w.tos, _ = ip.TOS()
		w.ttl = ip.TTL()
		w.proto = ip.Protocol()
		l4 = b[ip.HeaderLength():ip.TotalLength()]
	case 6:
		ip := header.IPv6(b)
		if !ip.IsValid(len(b)) {
			return nil, errors.New("truncated IPv6 packet")
		}
		w.v6 = true
		w.src = netip.AddrFrom16(ip.SourceAddress().As16())
		w.dst = netip.AddrFrom16(ip.DestinationAddress().As16())
		w.tos, w.flow = ip.TOS()
		w.ttl = ip.HopLimit()
		w.proto = uint8(ip.TransportProtocol())
		l4 = b[header.IPv6MinimumSize : header.IPv6MinimumSize+int(ip.PayloadLength())]
	default:
		return nil, errNotIP
	}
	switch w.proto {
	case uint8(header.TCPProtocolNumber):
		if len(l4) < header.TCPMinimumSize {
			return nil, errors.New("truncated TCP header")
		}
		t := header.TCP(l4)
		off := int(t.DataOffset())
		if off < header.TCPMinimumSize || off > len(l4) {
			return nil, errors.New("bad TCP data offset")
		}
		w.sport, w.dport = t.SourcePort(), t.DestinationPort()
		w.seq, w.ack = t.SequenceNumber(), t.AckNumber()
		w.flags = uint16(l4[13]) | uint16(l4[12]&1)<<8
		w.win, w.urg = t.WindowSize(), t.UrgentPointer()
		w.opts = l4[header.TCPMinimumSize:off]
		w.payload = l4[off:]
	case uint8(header.UDPProtocolNumber):
		if len(l4) < header.UDPMinimumSize {
			return nil, errors.New("truncated UDP header")
		}
		u := header.UDP(l4)
		w.sport, w.dport = u.SourcePort(), u.DestinationPort()
		w.payload = l4[header.UDPMinimumSize:]
	case uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		if len(l4) < 8 {
			return nil, errors.New("truncated ICMP header")
		}
		w.icmpType, w.icmpCode = l4[0], l4[1]
		w.payload = l4[8:]
	}
	return w, nil
}

func (w *wire) isTCP() bool { return w.proto == uint8(header.TCPProtocolNumber) }
func (w *wire) isUDP() bool { return w.proto == uint8(header.UDPProtocolNumber) }
func (w *wire) isICMP() bool {
	return w.proto == uint8(header.ICMPv4ProtocolNumber) || w.proto == uint8(header.ICMPv6ProtocolNumber)
}

// encodeOptions writes TCP options in the order given.
func encodeOptions(opts []TCPOption) []byte {
	var b []byte
	for _, o := range opts {
		switch o.Kind {
		case OptEOL, OptNOP:
			b = append(b, o.Kind)
		case OptMSS:
			b = append(b, OptMSS, 4, byte(o.MSS>>8), byte(o.MSS))
		case OptWScale:
			b = append(b, OptWScale, 3, o.WScale)
		case OptSACKOK:
			b = append(b, OptSACKOK, 2)
		case OptSACK:
			b = append(b, OptSACK, byte(2+8*len(o.SACK)))
			for _, blk := range o.SACK {
				b = binary.BigEndian.AppendUint32(b, blk[0])
				b = binary.BigEndian.AppendUint32(b, blk[1])
			}
		case OptTimestamp:
			b = append(b, OptTimestamp, 10)
			b = binary.BigEndian.AppendUint32(b, o.TSVal)
			b = binary.BigEndian.AppendUint32(b, o.TSEcr)
		case OptFastOpen:
			b = append(b, OptFastOpen, byte(2+len(o.Data)))
			b = append(b, o.Data...)
		case OptExp:
			b = append(b, OptExp, byte(4+len(o.Data)), 0xf9, 0x89) // the fast open magic
			b = append(b, o.Data...)
		case OptMD5:
			b = append(b, OptMD5, byte(2+len(o.Data)))
			b = append(b, o.Data...)
		}
	}
	return b
}

func optionsLen(opts []TCPOption) int { return len(encodeOptions(opts)) }

// decodeOptions parses TCP option bytes into options, as far as they are
// well-formed.
func decodeOptions(b []byte) ([]TCPOption, error) {
	var out []TCPOption
	for i := 0; i < len(b); {
		kind := b[i]
		if kind == OptEOL || kind == OptNOP {
			out = append(out, TCPOption{Kind: kind})
			i++
			continue
		}
		if i+1 >= len(b) || int(b[i+1]) < 2 || i+int(b[i+1]) > len(b) {
			return out, fmt.Errorf("malformed TCP option %d", kind)
		}
		l := int(b[i+1])
		d := b[i+2 : i+l]
		o := TCPOption{Kind: kind}
		switch {
		case kind == OptMSS && l == 4:
			o.MSS = binary.BigEndian.Uint16(d)
		case kind == OptWScale && l == 3:
			o.WScale = d[0]
		case kind == OptSACKOK && l == 2:
		case kind == OptSACK && (l-2)%8 == 0:
			for j := 0; j+8 <= len(d); j += 8 {
				o.SACK = append(o.SACK, [2]uint32{binary.BigEndian.Uint32(d[j:]), binary.BigEndian.Uint32(d[j+4:])})
			}
		case kind == OptTimestamp && l == 10:
			o.TSVal, o.TSEcr = binary.BigEndian.Uint32(d), binary.BigEndian.Uint32(d[4:])
		case kind == OptExp && l >= 4 && d[0] == 0xf9 && d[1] == 0x89:
			o.Data = append([]byte(nil), d[2:]...)
		default:
			o.Data = append([]byte(nil), d...)
		}
		out = append(out, o)
		i += l
	}
	return out, nil
}

// optionsString writes options as a script does: "mss 1460,sackOK,...".
func optionsString(opts []TCPOption) string {
	var parts []string
	for _, o := range opts {
		switch o.Kind {
		case OptEOL:
			parts = append(parts, "eol")
		case OptNOP:
			parts = append(parts, "nop")
		case OptMSS:
			parts = append(parts, fmt.Sprintf("mss %d", o.MSS))
		case OptWScale:
			parts = append(parts, fmt.Sprintf("wscale %d", o.WScale))
		case OptSACKOK:
			parts = append(parts, "sackOK")
		case OptSACK:
			s := "sack"
			for _, b := range o.SACK {
				s += fmt.Sprintf(" %d:%d", b[0], b[1])
			}
			parts = append(parts, s)
		case OptTimestamp:
			parts = append(parts, fmt.Sprintf("TS val %d ecr %d", o.TSVal, o.TSEcr))
		case OptFastOpen:
			parts = append(parts, strings.TrimSpace(fmt.Sprintf("FO %x", o.Data)))
		case OptExp:
			parts = append(parts, strings.TrimSpace(fmt.Sprintf("FOEXP %x", o.Data)))
		case OptMD5:
			parts = append(parts, fmt.Sprintf("md5 %x", o.Data))
		default:
			parts = append(parts, fmt.Sprintf("opt%d(%x)", o.Kind, o.Data))
		}
	}
	return strings.Join(parts, ",")
}

// ipHeader prepends an IPv4 or IPv6 header for l4 (whose checksum field
// at csumOff, if >= 0, is filled in over the pseudo-header).
func ipHeader(src, dst netip.Addr, proto uint8, tos, ttl uint8, flow uint32, l4 []byte, csumOff int) []byte {
	if ttl == 0 {
		ttl = 64
	}
	var b []byte
	s, d := tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice())
	if src.Is4() {
		b = make([]byte, header.IPv4MinimumSize+len(l4))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TOS: tos, TotalLength: uint16(len(b)), TTL: ttl, Protocol: proto, SrcAddr: s, DstAddr: d})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(b[header.IPv4MinimumSize:], l4)
	} else {
		b = make([]byte, header.IPv6MinimumSize+len(l4))
		header.IPv6(b).Encode(&header.IPv6Fields{TrafficClass: tos, FlowLabel: flow, PayloadLength: uint16(len(l4)),
			TransportProtocol: tcpip.TransportProtocolNumber(proto), HopLimit: ttl, SrcAddr: s, DstAddr: d})
		copy(b[header.IPv6MinimumSize:], l4)
	}
	if csumOff >= 0 {
		seg := b[len(b)-len(l4):]
		seg[csumOff], seg[csumOff+1] = 0, 0
		xsum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), s, d, uint16(len(seg)))
		if proto == uint8(header.ICMPv4ProtocolNumber) {
			xsum = 0 // ICMPv4 has no pseudo-header
		}
		c := ^checksum.Checksum(seg, xsum)
		if c == 0 && proto == uint8(header.UDPProtocolNumber) {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(seg[csumOff:], c)
	}
	return b
}

// tcpSegment builds a TCP header with options and a zero payload.
func tcpSegment(sport, dport uint16, seq, ack uint32, flags uint16, win, urg uint16, opts []byte, payload int) []byte {
	hl := header.TCPMinimumSize + len(opts)
	b := make([]byte, hl+payload)
	header.TCP(b).Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, SeqNum: seq, AckNum: ack,
		DataOffset: uint8(hl), Flags: header.TCPFlags(flags & 0xff), WindowSize: win, UrgentPointer: urg})
	b[12] |= byte(flags>>8) & 1
	copy(b[header.TCPMinimumSize:], opts)
	return b
}

// udpDatagram builds a UDP header and a zero payload.
func udpDatagram(sport, dport uint16, payload int) []byte {
	b := make([]byte, header.UDPMinimumSize+payload)
	header.UDP(b).Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(b))})
	return b
}

// ICMP type and code names, as scripts write them.
var (
	icmp4Types = map[string]uint8{"echo_reply": 0, "unreachable": 3, "source_quench": 4, "redirect": 5,
		"echo_request": 8, "time_exceeded": 11, "parameter_problem": 12, "timestamp_request": 13,
		"timestamp_reply": 14, "information_request": 15, "information_reply": 16,
		"address_mask_request": 17, "address_mask_reply": 18}
	icmp4Unreach = map[string]uint8{"net_unreachable": 0, "host_unreachable": 1, "protocol_unreachable": 2,
		"port_unreachable": 3, "frag_needed": 4, "source_route_failed": 5, "net_unknown": 6, "host_unknown": 7,
		"source_host_isolated": 8, "net_prohibited": 9, "host_prohibited": 10, "net_unreachable_for_tos": 11,
		"host_unreachable_for_tos": 12, "packet_filtered": 13, "precedence_violation": 14, "precedence_cutoff": 15}
	icmp6Types = map[string]uint8{"unreachable": 1, "packet_too_big": 2, "time_exceeded": 3,
		"parameter_problem": 4, "echo_request": 128, "echo_reply": 129}
	icmp6Codes = map[string]map[string]uint8{
		"unreachable":       {"net_unreachable": 0, "no_route": 0, "admin_prohibited": 1, "not_neighbour": 2, "address_unreachable": 3, "port_unreachable": 4},
		"time_exceeded":     {"exceeded_hop_limit": 0, "exceeded_frag_time": 1},
		"parameter_problem": {"header_field": 0, "unknown_next_header": 1, "unknown_option": 2},
	}
)

// icmpTypeCode resolves a packet line's ICMP type and code names.
func icmpTypeCode(v6 bool, typ, code string) (uint8, uint8, error) {
	var t, c int = -1, 0
	var n int
	if _, err := fmt.Sscanf(typ, "type_%d", &n); err == nil {
		t = n
	} else if v6 {
		if v, ok := icmp6Types[typ]; ok {
			t = int(v)
		}
	} else if v, ok := icmp4Types[typ]; ok {
		t = int(v)
	}
	if t < 0 || t > 255 {
		return 0, 0, fmt.Errorf("bad ICMP type %s", typ)
	}
	if code != "" {
		c = -1
		if _, err := fmt.Sscanf(code, "code_%d", &n); err == nil {
			c = n
		} else if v6 {
			if v, ok := icmp6Codes[typ][code]; ok {
				c = int(v)
			}
		} else if typ == "unreachable" {
			if v, ok := icmp4Unreach[code]; ok {
				c = int(v)
			}
		}
		if c < 0 || c > 255 {
			return 0, 0, fmt.Errorf("bad ICMP code %s", code)
		}
	}
	return uint8(t), uint8(c), nil
}
