package link

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// badChecksum is what verifyFrame found wrong with a frame, or that it
// left the frame for netstack to check.
type badChecksum int

const (
	checksumOK badChecksum = iota
	badIPv4Header
	badTCP
	badUDP
	malformedFrame // too short, or a partial checksum that cannot be completed

	// stackVerifies: the frame's TCP or UDP checksum can only be checked
	// after reassembly (an IPv4 fragment) or past extension headers (IPv6),
	// so the endpoint delivers it without vouching for it and netstack
	// checks it.
	stackVerifies
)

// verifyFrame checks the checksums of an Ethernet frame the kernel did not
// vouch for: the IPv4 header's, and the TCP or UDP checksum of an
// unfragmented IPv4 or IPv6 packet without extension headers. netstack
// skips verification for frames this endpoint vouches for, so this is
// where bad frames are caught. Fragments and IPv6 packets with extension
// headers are stackVerifies: netstack checks them after reassembly.
// Anything else this does not understand is passed on for netstack's own
// checks of lengths and headers.
func verifyFrame(frame []byte) badChecksum {
	if len(frame) < header.EthernetMinimumSize {
		return checksumOK
	}
	ip := frame[header.EthernetMinimumSize:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case uint16(header.IPv4ProtocolNumber):
		if len(ip) < header.IPv4MinimumSize {
			return checksumOK
		}
		h := header.IPv4(ip)
		hlen := int(h.HeaderLength())
		total := int(h.TotalLength())
		if hlen < header.IPv4MinimumSize || hlen > len(ip) || total < hlen || total > len(ip) {
			return checksumOK // netstack counts it malformed
		}
		if !h.IsChecksumValid() {
			return badIPv4Header
		}
		if h.More() || h.FragmentOffset() != 0 {
			return stackVerifies
		}
		return verifyTransport(h.TransportProtocol(), h.SourceAddress(), h.DestinationAddress(), ip[hlen:total])
	case uint16(header.IPv6ProtocolNumber):
		if len(ip) < header.IPv6MinimumSize {
			return checksumOK
		}
		h := header.IPv6(ip)
		end := header.IPv6MinimumSize + int(h.PayloadLength())
		if end > len(ip) {
			return checksumOK
		}
		switch proto := h.TransportProtocol(); proto {
		case header.TCPProtocolNumber, header.UDPProtocolNumber:
			return verifyTransport(proto, h.SourceAddress(), h.DestinationAddress(), ip[header.IPv6MinimumSize:end])
		case header.ICMPv6ProtocolNumber:
			return checksumOK // netstack always checks ICMP
		}
		return stackVerifies // an extension header first: a fragment, hop-by-hop options…
	}
	return checksumOK
}

func verifyTransport(proto tcpip.TransportProtocolNumber, src, dst tcpip.Address, seg []byte) badChecksum {
	switch proto {
	case header.TCPProtocolNumber:
		if len(seg) < header.TCPMinimumSize {
			return checksumOK
		}
		if !l4ChecksumValid(proto, src, dst, seg) {
			return badTCP
		}
	case header.UDPProtocolNumber:
		if len(seg) < header.UDPMinimumSize {
			return checksumOK
		}
		// Zero is "no checksum" over IPv4; over IPv6 it is not allowed,
		// and fails the sum below.
		if header.UDP(seg).Checksum() == 0 && src.Len() == header.IPv4AddressSize {
			return checksumOK
		}
		if !l4ChecksumValid(proto, src, dst, seg) {
			return badUDP
		}
	}
	return checksumOK
}

// l4ChecksumValid sums the pseudo-header and the segment, checksum field
// included: a valid one sums to all ones.
func l4ChecksumValid(proto tcpip.TransportProtocolNumber, src, dst tcpip.Address, seg []byte) bool {
	sum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(seg)))
	return checksum.Checksum(seg, sum) == 0xffff
}

// countBad adds a bad frame to the counter netstack itself would have
// used, so ustack stats and the metrics show it as before.
func countBad(stats *tcpip.Stats, bad badChecksum) {
	if stats == nil {
		return
	}
	switch bad {
	case badIPv4Header, malformedFrame:
		stats.IP.MalformedPacketsReceived.Increment()
	case badTCP:
		stats.TCP.ChecksumErrors.Increment()
	case badUDP:
		stats.UDP.ChecksumErrors.Increment()
	}
}
