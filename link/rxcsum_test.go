package link

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// testFrame builds an Ethernet frame carrying an IPv4 or IPv6 packet with
// a TCP or UDP segment whose checksums are right, then lets mutate spoil it.
func testFrame(v6 bool, proto tcpip.TransportProtocolNumber, mutate func(ip, seg []byte)) []byte {
	payload := []byte("some data")
	var seg []byte
	if proto == header.TCPProtocolNumber {
		seg = make([]byte, header.TCPMinimumSize+len(payload))
		header.TCP(seg).Encode(&header.TCPFields{SrcPort: 5555, DstPort: 80, SeqNum: 1, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 100})
	} else {
		seg = make([]byte, header.UDPMinimumSize+len(payload))
		header.UDP(seg).Encode(&header.UDPFields{SrcPort: 5555, DstPort: 53, Length: uint16(len(seg))})
	}
	copy(seg[len(seg)-len(payload):], payload)
	var ip []byte
	var src, dst tcpip.Address
	if v6 {
		src, dst = tcpip.AddrFrom16([16]byte{0xfd, 15: 1}), tcpip.AddrFrom16([16]byte{0xfd, 15: 2})
		ip = make([]byte, header.IPv6MinimumSize)
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(len(seg)), TransportProtocol: proto, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		src, dst = tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
		ip = make([]byte, header.IPv4MinimumSize)
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip) + len(seg)), TTL: 64, Protocol: uint8(proto), SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
	}
	sum := ^checksum.Checksum(seg, header.PseudoHeaderChecksum(proto, src, dst, uint16(len(seg))))
	if proto == header.TCPProtocolNumber {
		header.TCP(seg).SetChecksum(sum)
	} else {
		header.UDP(seg).SetChecksum(sum)
	}
	if mutate != nil {
		mutate(ip, seg)
	}
	eth := make([]byte, header.EthernetMinimumSize)
	etherType := header.IPv4ProtocolNumber
	if v6 {
		etherType = header.IPv6ProtocolNumber
	}
	binary.BigEndian.PutUint16(eth[12:], uint16(etherType))
	return append(append(eth, ip...), seg...)
}

func TestVerifyFrame(t *testing.T) {
	tcpProto, udpProto := header.TCPProtocolNumber, header.UDPProtocolNumber
	flip := func(_, seg []byte) { seg[len(seg)-1] ^= 0xff }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  badChecksum
	}{
		{"good TCP over IPv4", testFrame(false, tcpProto, nil), checksumOK},
		{"good UDP over IPv6", testFrame(true, udpProto, nil), checksumOK},
		{"good TCP over IPv6", testFrame(true, tcpProto, nil), checksumOK},
		{"corrupt TCP payload over IPv4", testFrame(false, tcpProto, flip), badTCP},
		{"corrupt TCP payload over IPv6", testFrame(true, tcpProto, flip), badTCP},
		{"corrupt UDP payload over IPv4", testFrame(false, udpProto, flip), badUDP},
		{"bad IPv4 header checksum", testFrame(false, tcpProto, func(ip, _ []byte) { ip[8]-- }), badIPv4Header},
		{"UDP without checksum over IPv4", testFrame(false, udpProto, func(_, seg []byte) { header.UDP(seg).SetChecksum(0) }), checksumOK},
		{"UDP without checksum over IPv6", testFrame(true, udpProto, func(_, seg []byte) { header.UDP(seg).SetChecksum(0) }), badUDP},
		{"a fragment is left to reassembly", testFrame(false, tcpProto, func(ip, seg []byte) {
			h := header.IPv4(ip)
			h.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
			h.SetChecksum(0)
			h.SetChecksum(^h.CalculateChecksum())
			seg[len(seg)-1] ^= 0xff
		}), checksumOK},
		{"truncated IPv4 header is netstack's to count", testFrame(false, tcpProto, nil)[:header.EthernetMinimumSize+10], checksumOK},
		{"total length beyond the frame is netstack's to count", testFrame(false, tcpProto, func(ip, _ []byte) {
			h := header.IPv4(ip)
			h.SetTotalLength(1400)
			h.SetChecksum(0)
			h.SetChecksum(^h.CalculateChecksum())
		}), checksumOK},
		{"not IP", append(make([]byte, 12), 0x08, 0x06, 1, 2, 3), checksumOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := verifyFrame(tc.frame); got != tc.want {
				t.Errorf("verifyFrame = %d, want %d", got, tc.want)
			}
		})
	}
}
