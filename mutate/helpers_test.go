package mutate

import (
	"net/netip"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

var (
	addrLocal  = netip.MustParseAddr("10.0.9.1")
	addrRemote = netip.MustParseAddr("10.0.9.2")
	addrLocal6 = netip.MustParseAddr("fd09::1")
	addrRem6   = netip.MustParseAddr("fd09::2")
)

// segment describes a crafted TCP frame.
type segment struct {
	src, dst     netip.Addr
	sport, dport uint16
	seq, ack     uint32
	flags        header.TCPFlags
	window       uint16
	payload      []byte
	ttl          uint8
	options      []byte // TCP options, a multiple of 4 bytes
}

// tcpFrame builds an Ethernet frame holding seg with valid checksums.
func tcpFrame(seg segment) []byte {
	ipLen := header.IPv4MinimumSize
	ethType := header.IPv4ProtocolNumber
	if seg.src.Is6() {
		ipLen, ethType = header.IPv6MinimumSize, header.IPv6ProtocolNumber
	}
	tcpLen := header.TCPMinimumSize + len(seg.options)
	n := header.EthernetMinimumSize + ipLen + tcpLen + len(seg.payload)
	b := make([]byte, n)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: "\x02\x00\x00\x00\x00\x02", Type: ethType})
	nw := b[header.EthernetMinimumSize:]
	src, dst := tcpip.AddrFromSlice(seg.src.AsSlice()), tcpip.AddrFromSlice(seg.dst.AsSlice())
	ttl := seg.ttl
	if ttl == 0 {
		ttl = 64
	}
	l4Len := tcpLen + len(seg.payload)
	if seg.src.Is4() {
		ip := header.IPv4(nw)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(ipLen + l4Len), TTL: ttl, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(nw).Encode(&header.IPv6Fields{PayloadLength: uint16(l4Len), TransportProtocol: header.TCPProtocolNumber, HopLimit: ttl, SrcAddr: src, DstAddr: dst})
	}
	t := header.TCP(nw[ipLen:])
	t.Encode(&header.TCPFields{SrcPort: seg.sport, DstPort: seg.dport, SeqNum: seg.seq, AckNum: seg.ack, DataOffset: uint8(tcpLen), Flags: seg.flags, WindowSize: seg.window})
	copy(t[header.TCPMinimumSize:], seg.options)
	copy(t[tcpLen:], seg.payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(l4Len))
	t.SetChecksum(^checksum.Checksum(t, xsum))
	return b
}

// readFrame is a frame read back, its checksums checked.
type readFrame struct {
	f          frame
	ttl        uint8
	window     uint16
	checksumOK bool
}

func readBack(t *testing.T, b []byte) readFrame {
	t.Helper()
	f, res := parseFrame(b, header.EthernetMinimumSize, len(b))
	if res != parsed {
		t.Fatalf("frame does not parse (%d): % x", res, b)
	}
	p := readFrame{f: f}
	nw := b[f.ipOff:f.end]
	ok := true
	if f.v4 {
		ip := header.IPv4(nw)
		p.ttl = ip.TTL()
		ok = ip.IsChecksumValid()
	} else {
		p.ttl = header.IPv6(nw).HopLimit()
	}
	if f.isTCP() {
		tcp := f.tcp()
		p.window = tcp.WindowSize()
		payload := tcp[f.tcpLen:]
		src, dst := tcpip.AddrFromSlice(f.src.AsSlice()), tcpip.AddrFromSlice(f.dst.AsSlice())
		ok = ok && tcp.IsChecksumValid(src, dst, checksum.Checksum(payload, 0), uint16(len(payload)))
	}
	p.checksumOK = ok
	return p
}

// rig is an Endpoint over a channel endpoint, with what it delivers up
// recorded.
type rig struct {
	ep   *Endpoint
	wire *channel.Endpoint
	up   *recorder
}

func newRig(t *testing.T, rules ...string) *rig {
	t.Helper()
	var rs []Rule
	for _, s := range rules {
		r, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		rs = append(rs, r)
	}
	wire := channel.New(1024, 1500, "")
	ep, err := New(wire, nil, header.EthernetMinimumSize, rs)
	if err != nil {
		t.Fatal(err)
	}
	up := &recorder{}
	ep.Attach(up)
	t.Cleanup(ep.Close)
	return &rig{ep: ep, wire: wire, up: up}
}

// send writes frames as the stack would and returns what reached the wire.
func (r *rig) send(t *testing.T, frames ...[]byte) [][]byte {
	t.Helper()
	var l stack.PacketBufferList
	for _, b := range frames {
		l.PushBack(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)}))
	}
	if n, err := r.ep.WritePackets(l); err != nil || n != len(frames) {
		t.Fatalf("WritePackets: %d, %v", n, err)
	}
	l.Reset()
	return r.drain()
}

func (r *rig) drain() [][]byte {
	var out [][]byte
	for {
		p := r.wire.Read()
		if p == nil {
			return out
		}
		out = append(out, bytesOf(p))
		p.DecRef()
	}
}

// receive hands a frame up from the wire.
func (r *rig) receive(b []byte) {
	r.wire.InjectInbound(0, stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)}))
}

func bytesOf(p *stack.PacketBuffer) []byte {
	buf := p.ToBuffer()
	defer buf.Release()
	return buf.Flatten()
}

// recorder is the stack above the Endpoint: it keeps what arrives.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
}

func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, p *stack.PacketBuffer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, bytesOf(p))
}

func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (r *recorder) got() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.frames...)
}
