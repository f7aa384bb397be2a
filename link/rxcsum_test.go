package link

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	ip4 "gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	ip6 "gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
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
		}), stackVerifies},
		{"an IPv6 extension header is left to netstack", testFrame(true, udpProto, func(ip, seg []byte) {
			ip[6] = uint8(header.IPv6HopByHopOptionsExtHdrIdentifier)
			seg[len(seg)-1] ^= 0xff
		}), stackVerifies},
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

// TestFragmentChecksumsVerified: a UDP datagram in two fragments, over
// IPv4 and over IPv6, reaches a netstack socket through the vnet endpoint
// (fed over a socketpair, with no vnet flags: nobody vouches for it). A
// good one is delivered; one with a bad UDP checksum is dropped and counted
// once reassembled, although the endpoint tells netstack to trust the
// checksums of the frames it has checked.
func TestFragmentChecksumsVerified(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	mac := tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02")
	ep, err := newVnetEndpoint(fds[0], "test", 1500, mac, 0)
	if err != nil {
		t.Fatal(err)
	}
	ns := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ip4.NewProtocol, ip6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
	})
	defer func() { ns.Close(); ns.Wait() }()
	if err := ns.CreateNIC(1, ethernet.New(ep)); err != nil {
		t.Fatal(err)
	}
	for _, a := range []tcpip.Address{fragTestDst(false), fragTestDst(true)} {
		proto := ip4.ProtocolNumber
		if a.Len() == 16 {
			proto = ip6.ProtocolNumber
		}
		if err := ns.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: a.WithPrefix()}, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "IPv4", true: "IPv6"}[v6], func(t *testing.T) {
			netProto := ip4.ProtocolNumber
			if v6 {
				netProto = ip6.ProtocolNumber
			}
			var wq waiter.Queue
			sock, terr := ns.NewEndpoint(udp.ProtocolNumber, netProto, &wq)
			if terr != nil {
				t.Fatal(terr)
			}
			defer sock.Close()
			if terr := sock.Bind(tcpip.FullAddress{Addr: fragTestDst(v6), Port: 9999}); terr != nil {
				t.Fatal(terr)
			}
			entry, readable := waiter.NewChannelEntry(waiter.ReadableEvents)
			wq.EventRegister(&entry)
			defer wq.EventUnregister(&entry)
			errsBefore := ns.Stats().UDP.ChecksumErrors.Value()
			for i, good := range []bool{false, true} {
				for _, f := range fragmentedDatagram(v6, uint32(100+i), good, mac) {
					if _, err := unix.Write(fds[1], append(make([]byte, header.VirtioNetHeaderSize), f...)); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Frames are delivered in order, so once the good datagram is
			// in, the bad one has been dealt with.
			var got bytes.Buffer
			deadline := time.After(5 * time.Second)
			for got.Len() == 0 {
				if _, terr := sock.Read(&got, tcpip.ReadOptions{}); terr != nil {
					select {
					case <-readable:
					case <-deadline:
						t.Fatal("the good fragmented datagram did not arrive")
					}
				}
			}
			if got.String() != fragTestPayload(true) {
				t.Errorf("received %q, want only the good datagram %q", got.String(), fragTestPayload(true))
			}
			if _, terr := sock.Read(&got, tcpip.ReadOptions{}); terr == nil {
				t.Errorf("a second datagram was delivered: %q", got.String())
			}
			if n := ns.Stats().UDP.ChecksumErrors.Value() - errsBefore; n != 1 {
				t.Errorf("UDP checksum errors counted: %d, want 1 (the bad datagram, once reassembled)", n)
			}
		})
	}
}

func fragTestDst(v6 bool) tcpip.Address {
	if v6 {
		return tcpip.AddrFrom16([16]byte{0xfd, 15: 2})
	}
	return tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
}

// fragTestPayload is 24 bytes, three 8-byte fragment units.
func fragTestPayload(good bool) string {
	if good {
		return "good datagram, 24 bytes."
	}
	return "bad datagram of 24 bytes"
}

// fragmentedDatagram is a UDP datagram to fragTestDst:9999 (8 bytes of
// header and 24 of payload) in two Ethernet frames of 16 bytes of it each;
// when !good its checksum is off by one.
func fragmentedDatagram(v6 bool, id uint32, good bool, dstMAC tcpip.LinkAddress) [][]byte {
	payload := []byte(fragTestPayload(good))
	seg := make([]byte, header.UDPMinimumSize+len(payload))
	copy(seg[header.UDPMinimumSize:], payload)
	header.UDP(seg).Encode(&header.UDPFields{SrcPort: 5555, DstPort: 9999, Length: uint16(len(seg))})
	src, dst := tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), fragTestDst(false)
	if v6 {
		src, dst = tcpip.AddrFrom16([16]byte{0xfd, 15: 1}), fragTestDst(true)
	}
	sum := ^checksum.Checksum(seg, header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(seg))))
	if !good {
		sum++
	}
	header.UDP(seg).SetChecksum(sum)
	var frames [][]byte
	for off := 0; off < len(seg); off += 16 {
		more := off+16 < len(seg)
		part := seg[off : off+16]
		eth := make([]byte, header.EthernetMinimumSize)
		copy(eth, dstMAC)
		copy(eth[6:], "\x02\x00\x00\x00\x00\x01")
		var ip []byte
		if v6 {
			binary.BigEndian.PutUint16(eth[12:], uint16(header.IPv6ProtocolNumber))
			ip = make([]byte, header.IPv6MinimumSize+header.IPv6FragmentHeaderSize)
			header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(header.IPv6FragmentHeaderSize + len(part)),
				TransportProtocol: header.IPv6FragmentHeader, HopLimit: 64, SrcAddr: src, DstAddr: dst})
			fh := ip[header.IPv6MinimumSize:]
			fh[0] = uint8(header.UDPProtocolNumber)
			offMore := uint16(off/8) << 3
			if more {
				offMore |= 1
			}
			binary.BigEndian.PutUint16(fh[2:], offMore)
			binary.BigEndian.PutUint32(fh[4:], id)
		} else {
			binary.BigEndian.PutUint16(eth[12:], uint16(header.IPv4ProtocolNumber))
			ip = make([]byte, header.IPv4MinimumSize)
			h := header.IPv4(ip)
			var flags uint8
			if more {
				flags = header.IPv4FlagMoreFragments
			}
			h.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip) + len(part)), ID: uint16(id), Flags: flags,
				FragmentOffset: uint16(off), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
			h.SetChecksum(^h.CalculateChecksum())
		}
		frames = append(frames, append(append(eth, ip...), part...))
	}
	return frames
}
