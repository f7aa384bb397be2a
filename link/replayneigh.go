package link

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// A replayed capture's senders cannot answer anything: they are records in
// a file. Without help, whatever the receiving stack sends back to them
// stops at address resolution, and the recording shows only ARP requests
// and neighbour solicitations, never the reply the experiment is about. So
// a replay remembers which MAC each IP source of the capture was sent
// from, and answers the receiver's ARP requests and neighbour solicitations
// for those addresses in the senders' place, as the senders would have.

// replayNeighbours maps the IP sources seen in a capture to the MAC that
// sent them.
type replayNeighbours struct {
	mu   sync.Mutex
	macs map[tcpip.Address]tcpip.LinkAddress
}

// learn notes the source address and MAC of an IPv4 or IPv6 frame about to
// be replayed. Unspecified, multicast and broadcast sources and group MACs
// name no neighbour and are passed over.
func (n *replayNeighbours) learn(frame []byte) {
	if len(frame) < header.EthernetMinimumSize {
		return
	}
	eth := header.Ethernet(frame)
	mac := eth.SourceAddress()
	if header.IsMulticastEthernetAddress(mac) || mac == header.EthernetBroadcastAddress {
		return
	}
	var src tcpip.Address
	payload := frame[header.EthernetMinimumSize:]
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(payload)
		if !ip.IsValid(len(payload)) {
			return
		}
		src = ip.SourceAddress()
		if src == header.IPv4Any || src == header.IPv4Broadcast || header.IsV4MulticastAddress(src) {
			return
		}
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(payload)
		if !ip.IsValid(len(payload)) {
			return
		}
		src = ip.SourceAddress()
		if src == header.IPv6Any || header.IsV6MulticastAddress(src) {
			return
		}
	default:
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.macs == nil {
		n.macs = map[tcpip.Address]tcpip.LinkAddress{}
	}
	n.macs[src] = mac
}

func (n *replayNeighbours) lookup(a tcpip.Address) (tcpip.LinkAddress, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	mac, ok := n.macs[a]
	return mac, ok
}

// answer returns the reply a capture's sender would give to sent, a frame
// the receiver sends: an ARP reply to an ARP request, or a solicited
// neighbour advertisement to a neighbour solicitation, for an address the
// capture has sent from. ok is false for any other frame.
func (n *replayNeighbours) answer(sent []byte) (reply []byte, ok bool) {
	if len(sent) < header.EthernetMinimumSize {
		return nil, false
	}
	eth := header.Ethernet(sent)
	switch eth.Type() {
	case header.ARPProtocolNumber:
		return n.answerARP(eth.SourceAddress(), header.ARP(sent[header.EthernetMinimumSize:]))
	case header.IPv6ProtocolNumber:
		return n.answerNS(eth.SourceAddress(), sent[header.EthernetMinimumSize:])
	}
	return nil, false
}

func (n *replayNeighbours) answerARP(askerMAC tcpip.LinkAddress, req header.ARP) ([]byte, bool) {
	if !req.IsValid() || req.Op() != header.ARPRequest {
		return nil, false
	}
	target := tcpip.AddrFrom4Slice(req.ProtocolAddressTarget())
	mac, ok := n.lookup(target)
	if !ok {
		return nil, false
	}
	frame := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: mac, DstAddr: askerMAC, Type: header.ARPProtocolNumber})
	rep := header.ARP(frame[header.EthernetMinimumSize:])
	rep.SetIPv4OverEthernet()
	rep.SetOp(header.ARPReply)
	copy(rep.HardwareAddressSender(), mac)
	copy(rep.ProtocolAddressSender(), req.ProtocolAddressTarget())
	copy(rep.HardwareAddressTarget(), req.HardwareAddressSender())
	copy(rep.ProtocolAddressTarget(), req.ProtocolAddressSender())
	return frame, true
}

func (n *replayNeighbours) answerNS(askerMAC tcpip.LinkAddress, packet []byte) ([]byte, bool) {
	ip := header.IPv6(packet)
	if !ip.IsValid(len(packet)) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
		return nil, false // extension headers: a stack's solicitations have none
	}
	icmp := header.ICMPv6(ip.Payload())
	if len(icmp) < header.ICMPv6NeighborSolicitMinimumSize || icmp.Type() != header.ICMPv6NeighborSolicit {
		return nil, false
	}
	target := header.NDPNeighborSolicit(icmp.MessageBody()).TargetAddress()
	mac, ok := n.lookup(target)
	if !ok {
		return nil, false
	}
	asker := ip.SourceAddress()
	dst := asker
	if asker == header.IPv6Any {
		// Duplicate address detection: the answer goes to all nodes.
		dst = header.IPv6AllNodesMulticastAddress
	}
	opts := header.NDPOptionsSerializer{header.NDPTargetLinkLayerAddressOption(mac)}
	icmpLen := header.ICMPv6NeighborAdvertMinimumSize + opts.Length()
	frame := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+icmpLen)
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: mac, DstAddr: askerMAC, Type: header.IPv6ProtocolNumber})
	out := header.IPv6(frame[header.EthernetMinimumSize:])
	out.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(icmpLen),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           target,
		DstAddr:           dst,
	})
	na := header.ICMPv6(out.Payload())
	na.SetType(header.ICMPv6NeighborAdvert)
	body := header.NDPNeighborAdvert(na.MessageBody())
	body.SetSolicitedFlag(asker != header.IPv6Any)
	body.SetOverrideFlag(true)
	body.SetTargetAddress(target)
	body.Options().Serialize(opts)
	na.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: na, Src: target, Dst: dst}))
	return frame, true
}
