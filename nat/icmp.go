package nat

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	xipv4 "golang.org/x/net/ipv4"
	xipv6 "golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/netstack"
)

// echoIdleTimeout closes a host ICMP socket once its guest ping has stopped.
const echoIdleTimeout = 10 * time.Second

// echoProxy sits between the link and the gateway's Ethernet layer. It takes
// ICMP echo requests bound for the outside (and for the host alias) off the
// wire and sends them through host ICMP sockets, so the guest's ping
// measures the real path. The gateway netstack, being promiscuous, would
// otherwise answer every echo itself and report a fake round trip.
type echoProxy struct {
	nested.Endpoint
	g     *Gateway
	lower stack.LinkEndpoint

	mu     sync.Mutex
	flows  map[echoKey]*echoFlow
	closed bool
	warned bool
}

var (
	_ stack.LinkEndpoint      = (*echoProxy)(nil)
	_ stack.GSOEndpoint       = (*echoProxy)(nil)
	_ stack.NetworkDispatcher = (*echoProxy)(nil)
)

type echoKey struct {
	dst netip.Addr // what the guest pinged
	id  uint16     // the guest's echo identifier
}

// echoFlow is one guest ping session and its host socket.
type echoFlow struct {
	key        echoKey
	guest      netip.Addr // the guest's source address
	target     netip.Addr // the host address actually pinged
	guestMAC   tcpip.LinkAddress
	gatewayMAC tcpip.LinkAddress
	conn       *icmp.PacketConn
	raw        bool // a raw socket: replies for other sockets arrive too
}

func newEchoProxy(g *Gateway, lower stack.LinkEndpoint) *echoProxy {
	e := &echoProxy{g: g, lower: lower, flows: map[echoKey]*echoFlow{}}
	e.Endpoint.Init(lower, e)
	return e
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (e *echoProxy) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if e.intercept(pkt) {
		return
	}
	e.Endpoint.DeliverNetworkPacket(proto, pkt)
}

// echoRequest is the part of a guest echo request the proxy needs.
type echoRequest struct {
	src, dst netip.Addr
	srcMAC   tcpip.LinkAddress
	dstMAC   tcpip.LinkAddress
	id, seq  uint16
	payload  []byte
}

// parseEchoRequest recognises an Ethernet frame carrying an unfragmented
// ICMPv4 or ICMPv6 echo request, checking every length against the frame.
func parseEchoRequest(pkt *stack.PacketBuffer) (echoRequest, bool) {
	var req echoRequest
	size := pkt.Data().Size()
	hdr, ok := pkt.Data().PullUp(min(size, header.EthernetMinimumSize+header.IPv6MinimumSize))
	if !ok || len(hdr) < header.EthernetMinimumSize+header.IPv4MinimumSize {
		return req, false
	}
	eth := header.Ethernet(hdr)
	req.srcMAC, req.dstMAC = eth.SourceAddress(), eth.DestinationAddress()
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(hdr[header.EthernetMinimumSize:])
		ihl := int(ip.HeaderLength())
		total := int(ip.TotalLength())
		if ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) || ip.More() || ip.FragmentOffset() != 0 ||
			ihl < header.IPv4MinimumSize || total < ihl+header.ICMPv4MinimumSize || header.EthernetMinimumSize+total > size {
			return req, false
		}
		frame, ok := pkt.Data().PullUp(header.EthernetMinimumSize + total)
		if !ok {
			return req, false
		}
		msg := header.ICMPv4(frame[header.EthernetMinimumSize+ihl:])
		if msg.Type() != header.ICMPv4Echo || msg.Code() != 0 {
			return req, false
		}
		req.src, _ = netip.AddrFromSlice(ip.SourceAddressSlice())
		req.dst, _ = netip.AddrFromSlice(ip.DestinationAddressSlice())
		req.id, req.seq = msg.Ident(), msg.Sequence()
		req.payload = append([]byte(nil), msg.Payload()...)
	case header.IPv6ProtocolNumber:
		if len(hdr) < header.EthernetMinimumSize+header.IPv6MinimumSize {
			return req, false
		}
		ip := header.IPv6(hdr[header.EthernetMinimumSize:])
		plen := int(ip.PayloadLength())
		if ip.TransportProtocol() != header.ICMPv6ProtocolNumber || plen < header.ICMPv6EchoMinimumSize ||
			header.EthernetMinimumSize+header.IPv6MinimumSize+plen > size {
			return req, false
		}
		frame, ok := pkt.Data().PullUp(header.EthernetMinimumSize + header.IPv6MinimumSize + plen)
		if !ok {
			return req, false
		}
		msg := header.ICMPv6(frame[header.EthernetMinimumSize+header.IPv6MinimumSize:])
		if msg.Type() != header.ICMPv6EchoRequest || msg.Code() != 0 {
			return req, false
		}
		req.src, _ = netip.AddrFromSlice(ip.SourceAddressSlice())
		req.dst, _ = netip.AddrFromSlice(ip.DestinationAddressSlice())
		req.id, req.seq = msg.Ident(), msg.Sequence()
		req.payload = append([]byte(nil), msg.Payload()...)
	default:
		return req, false
	}
	return req, true
}

// intercept reports whether pkt was an echo request it has taken over.
func (e *echoProxy) intercept(pkt *stack.PacketBuffer) bool {
	req, ok := parseEchoRequest(pkt)
	if !ok {
		return false
	}
	target, ok := e.echoTarget(req.dst)
	if !ok {
		return false // the gateway netstack answers (DNS address, link-local, ...)
	}
	if !target.IsValid() {
		return true // not a real destination: dropped, as on a wire
	}
	e.forward(req, target)
	return true
}

// echoTarget decides where an echo to dst goes. ok=false: let the gateway
// answer itself; an invalid target: drop.
func (e *echoProxy) echoTarget(dst netip.Addr) (netip.Addr, bool) {
	cfg := &e.g.cfg
	switch {
	case dst == cfg.DNS4 || dst == cfg.DNS6 || dst.IsLinkLocalUnicast() || dst.IsMulticast():
		return netip.Addr{}, false
	case dst == cfg.Gateway4 || dst == cfg.Gateway6:
		if cfg.NoHostLoopback {
			return netip.Addr{}, false
		}
	}
	t, ok := e.g.hostTarget(netip.AddrPortFrom(dst, 0))
	if !ok {
		return netip.Addr{}, true
	}
	return t.Addr(), true
}

func (e *echoProxy) forward(req echoRequest, target netip.Addr) {
	key := echoKey{dst: req.dst, id: req.id}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	f := e.flows[key]
	if f == nil {
		conn, raw, err := listenICMP(target.Is4())
		if err != nil {
			if !e.warned {
				e.warned = true
				e.g.logf("nat: ping %s: %v (allow unprivileged ICMP with: sysctl -w net.ipv4.ping_group_range=\"0 2147483647\")", req.dst, err)
			}
			e.mu.Unlock()
			return
		}
		f = &echoFlow{key: key, guest: req.src, target: target, guestMAC: req.srcMAC, gatewayMAC: req.dstMAC, conn: conn, raw: raw}
		e.flows[key] = f
		e.g.goAsync(func() { e.readReplies(f) })
	}
	e.mu.Unlock()
	var typ icmp.Type = xipv4.ICMPTypeEcho
	if target.Is6() {
		typ = xipv6.ICMPTypeEchoRequest
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(req.id), Seq: int(req.seq), Data: req.payload}}
	b, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	if err != nil {
		return
	}
	var to net.Addr = &net.UDPAddr{IP: target.AsSlice()}
	if f.raw {
		to = &net.IPAddr{IP: target.AsSlice()}
	}
	f.conn.SetReadDeadline(time.Now().Add(echoIdleTimeout))
	if _, err := f.conn.WriteTo(b, to); err != nil {
		e.g.logf("nat: ping %s via %s: %v", req.dst, target, err)
	}
}

// listenICMP opens an unprivileged ping socket, or a raw ICMP socket where
// ping sockets are not allowed but we are root.
func listenICMP(v4 bool) (*icmp.PacketConn, bool, error) {
	network, rawNetwork, addr := "udp4", "ip4:icmp", "0.0.0.0"
	if !v4 {
		network, rawNetwork, addr = "udp6", "ip6:ipv6-icmp", "::"
	}
	c, err := icmp.ListenPacket(network, addr)
	if err == nil {
		return c, false, nil
	}
	if os.Geteuid() == 0 {
		if rc, rerr := icmp.ListenPacket(rawNetwork, addr); rerr == nil {
			return rc, true, nil
		}
	}
	return nil, false, err
}

// readReplies turns host echo replies back into frames for the guest until
// the flow has been idle for echoIdleTimeout.
func (e *echoProxy) readReplies(f *echoFlow) {
	defer func() {
		e.mu.Lock()
		delete(e.flows, f.key)
		e.mu.Unlock()
		f.conn.Close()
	}()
	proto := int(header.ICMPv4ProtocolNumber)
	if f.target.Is6() {
		proto = int(header.ICMPv6ProtocolNumber)
	}
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := f.conn.ReadFrom(buf)
		if err != nil {
			return // idle deadline, or closed
		}
		msg, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		if !ok || (msg.Type != xipv4.ICMPTypeEchoReply && msg.Type != xipv6.ICMPTypeEchoReply) {
			continue
		}
		if f.raw {
			// A raw socket sees every reply on the host: keep ours only.
			if ip, ok := netip.AddrFromSlice(addrIP(from)); !ok || ip.Unmap() != f.target || echo.ID != int(f.key.id) {
				continue
			}
		}
		e.inject(f, uint16(echo.Seq), echo.Data)
	}
}

func addrIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP
	case *net.IPAddr:
		return a.IP
	}
	return nil
}

// inject writes an echo reply from the pinged address to the guest.
func (e *echoProxy) inject(f *echoFlow, seq uint16, data []byte) {
	src := netstack.Address(f.key.dst)
	dst := netstack.Address(f.guest)
	typ := uint8(header.ICMPv6EchoReply)
	if f.key.dst.Is4() {
		typ = uint8(header.ICMPv4EchoReply)
	}
	var rest [4]byte // identifier and sequence number
	binary.BigEndian.PutUint16(rest[0:], f.key.id)
	binary.BigEndian.PutUint16(rest[2:], seq)
	proto, ip := icmpPacket(src, dst, typ, 0, rest, data)
	e.writeIP(proto, f.gatewayMAC, f.guestMAC, ip)
}

// icmpPacket builds an IP packet from src to dst (IPv4 or IPv6 by their
// family) carrying one ICMP message: type, code, the four bytes after the
// checksum (rest) and body. The two families' messages share that layout.
func icmpPacket(src, dst tcpip.Address, typ, code uint8, rest [4]byte, body []byte) (tcpip.NetworkProtocolNumber, []byte) {
	const icmpHeader = 8 // header.ICMPv4MinimumSize, header.ICMPv6MinimumSize
	if src.Len() == 4 {
		total := header.IPv4MinimumSize + icmpHeader + len(body)
		ip := make([]byte, total)
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(total), TTL: 64,
			Protocol: uint8(header.ICMPv4ProtocolNumber), SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
		msg := header.ICMPv4(ip[header.IPv4MinimumSize:])
		msg.SetType(header.ICMPv4Type(typ))
		msg.SetCode(header.ICMPv4Code(code))
		copy(msg[4:icmpHeader], rest[:])
		copy(msg[icmpHeader:], body)
		msg.SetChecksum(^checksum.Checksum(msg, 0))
		return header.IPv4ProtocolNumber, ip
	}
	plen := icmpHeader + len(body)
	ip := make([]byte, header.IPv6MinimumSize+plen)
	header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(plen),
		TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	msg := header.ICMPv6(ip[header.IPv6MinimumSize:])
	msg.SetType(header.ICMPv6Type(typ))
	msg.SetCode(header.ICMPv6Code(code))
	copy(msg[4:icmpHeader], rest[:])
	copy(msg[icmpHeader:], body)
	msg.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: msg[:icmpHeader], Src: src, Dst: dst,
		PayloadCsum: checksum.Checksum(body, 0), PayloadLen: len(body)}))
	return header.IPv6ProtocolNumber, ip
}

// writeIP sends an IP packet the gateway made itself straight to the guest,
// in an Ethernet frame from src to dst.
func (e *echoProxy) writeIP(proto tcpip.NetworkProtocolNumber, src, dst tcpip.LinkAddress, ip []byte) {
	frame := make([]byte, header.EthernetMinimumSize+len(ip))
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: src, DstAddr: dst, Type: proto})
	copy(frame[header.EthernetMinimumSize:], ip)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	var list stack.PacketBufferList
	list.PushBack(pkt)
	e.lower.WritePackets(list)
}

// close shuts every host ICMP socket.
func (e *echoProxy) close() {
	e.mu.Lock()
	e.closed = true
	for _, f := range e.flows {
		f.conn.Close()
	}
	e.mu.Unlock()
}
