package nat

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/link"
)

// discard is a dispatcher for the guest's end of the link, which the test
// only writes into.
type discard struct{}

func (discard) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (discard) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)    {}

// TestSourceRouteNotForwarded: a guest's UDP datagram to the host alias
// carrying a loose source route (through 10.0.2.99) reaches the host's
// loopback as a datagram of the gateway's own host socket, with no IP
// option: the gateway terminates the guest's packets and forwards payloads,
// never IP headers, so no route the guest names is followed.
func TestSourceRouteNotForwarded(t *testing.T) {
	host, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	rc, err := host.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVOPTS, 1) })
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(host.LocalAddr().(*net.UDPAddr).Port)
	buf, oob := make([]byte, 64), make([]byte, 256)
	// readOptions reads one datagram and the IP options it came with.
	readOptions := func() (string, []byte) {
		t.Helper()
		host.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, oobn, _, _, err := host.ReadMsgUDP(buf, oob)
		if err != nil {
			t.Fatalf("the host got nothing: %v", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVOPTS && len(m.Data) > 0 {
				return string(buf[:n]), m.Data
			}
		}
		return string(buf[:n]), nil
	}
	// The control: a kernel socket's datagram with a record-route option
	// shows its options to the reader.
	sender, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sender)
	if err := unix.SetsockoptString(sender, unix.IPPROTO_IP, unix.IP_OPTIONS, string([]byte{7, 7, 4, 0, 0, 0, 0, 1})); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(sender, []byte("control"), 0, &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if got, opts := readOptions(); got != "control" || opts == nil {
		t.Fatalf("the reader cannot see IP options: got %q with options %x", got, opts)
	}

	gwMAC := tcpip.LinkAddress("\x52\x55\x0a\x00\x02\x02")
	guestEnd, gwEnd := link.NewPair(1500+header.EthernetMinimumSize, "\x52\x54\x00\x12\x34\x56", gwMAC)
	defer guestEnd.Close()
	defer gwEnd.Close()
	guestEnd.Attach(discard{})
	gw, err := New(Config{
		Addrs:    []netip.Prefix{netip.MustParsePrefix("10.0.2.2/24"), netip.MustParsePrefix("10.0.2.3/24")},
		Guest4:   netip.MustParseAddr("10.0.2.15"),
		Gateway4: netip.MustParseAddr("10.0.2.2"),
		DNS4:     netip.MustParseAddr("10.0.2.3"),
		MTU:      1500,
		// No upstream: the host's resolv.conf is not read.
		DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")},
	}, gwEnd)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()

	// IPv4 header with LSRR (type 131: length 7, pointer 4, one hop) and
	// a NOP to fill the 28-byte header, then UDP.
	opts := []byte{131, 7, 4, 10, 0, 2, 99, 1}
	payload := []byte("routed?")
	ihl := header.IPv4MinimumSize + len(opts)
	frame := make([]byte, header.EthernetMinimumSize+ihl+header.UDPMinimumSize+len(payload))
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: "\x52\x54\x00\x12\x34\x56", DstAddr: gwMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	src, dst := tcpip.AddrFrom4([4]byte{10, 0, 2, 15}), tcpip.AddrFrom4([4]byte{10, 0, 2, 2})
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(frame) - header.EthernetMinimumSize), TTL: 64,
		Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
	// netstack's serializer knows no source route: the options are written
	// by hand, then the header length and checksum over them.
	ip[0] = 0x40 | byte(ihl/4)
	copy(ip[header.IPv4MinimumSize:ihl], opts)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	udp := header.UDP(ip[ihl:])
	udp.Encode(&header.UDPFields{SrcPort: 5555, DstPort: port, Length: uint16(header.UDPMinimumSize + len(payload))})
	copy(udp.Payload(), payload) // checksum 0: none, as IPv4 allows

	var pkts stack.PacketBufferList
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	pkts.PushBack(pkt)
	if _, terr := guestEnd.WritePackets(pkts); terr != nil {
		t.Fatalf("writing the frame: %v", terr)
	}
	pkt.DecRef()

	got, opts := readOptions()
	if got != string(payload) {
		t.Fatalf("the host got %q, want %q", got, payload)
	}
	if opts != nil {
		t.Fatalf("the datagram reached the host with IP options %x", opts)
	}
}
