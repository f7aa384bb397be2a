package link

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	netarp "gvisor.dev/gvisor/pkg/tcpip/network/arp"
	netipv4 "gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	netipv6 "gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"

	"github.com/ustack/ustack/internal/testwait"
)

// syncWriter is a bytes.Buffer the replay writes while the test reads it.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]byte(nil), w.b.Bytes()...)
}

// TestReplayAnswersResolution replays a raw-IP capture of two echo
// requests, IPv4 and IPv6, from a sender whose ARP and neighbour
// solicitations the capture does not hold, into a netstack stack: the
// replay answers the stack's resolution of the sender with the MAC the
// sender's frames came from, so the echo replies leave and are recorded.
// A resolution of an address the capture never sent from goes unanswered.
func TestReplayAnswersResolution(t *testing.T) {
	sender4, sender6 := net.IPv4(10, 0, 0, 1).To4(), net.ParseIP("fd00::1")
	own4, own6 := net.IPv4(10, 0, 0, 2).To4(), net.ParseIP("fd00::2")
	var records [][]byte
	for _, layersOf := range [][]gopacket.SerializableLayer{
		{&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: sender4, DstIP: own4},
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}},
		{&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: sender6, DstIP: own6},
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)},
			&layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1}},
	} {
		if ip6, ok := layersOf[0].(*layers.IPv6); ok {
			layersOf[1].(*layers.ICMPv6).SetNetworkLayerForChecksum(ip6)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, layersOf...); err != nil {
			t.Fatal(err)
		}
		records = append(records, buf.Bytes())
	}
	path := filepath.Join(t.TempDir(), "in.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	for i, rec := range records {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1000, int64(i)), CaptureLength: len(rec), Length: len(rec)}
		if err := w.WritePacket(ci, rec); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	var out syncWriter
	pw, err := NewPcapWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	own := tcpip.LinkAddress("\x02\x00\x00\x00\x00\xaa")
	ep, err := OpenReplay(path, 1500, own, ReplayOptions{Speed: 0, Out: pw})
	if err != nil {
		t.Fatal(err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{netipv4.NewProtocol, netipv6.NewProtocol, netarp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{icmp.NewProtocol4, icmp.NewProtocol6},
	})
	defer func() {
		s.Close()
		s.Wait()
	}()
	if err := s.CreateNIC(1, ethernet.New(ep)); err != nil {
		t.Fatal(err)
	}
	for _, a := range []tcpip.ProtocolAddress{
		{Protocol: netipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4Slice(own4), PrefixLen: 24}},
		{Protocol: netipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16Slice(own6), PrefixLen: 64}},
	} {
		if err := s.AddProtocolAddress(1, a, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: 1},
		{Destination: header.IPv6EmptySubnet, NIC: 1},
	})
	ep.Start()

	// The stand-in MAC a raw-IP capture's frames are given.
	stand := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	var replies4, replies6 bool
	testwait.For(t, "the stack's echo replies to the capture's sender, IPv4 and IPv6", func() bool {
		r, err := pcapgo.NewReader(bytes.NewReader(out.bytes()))
		if err != nil {
			return false
		}
		for {
			data, _, err := r.ReadPacketData()
			if err != nil {
				break
			}
			p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
			eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if eth == nil || !bytes.Equal(eth.DstMAC, stand) {
				continue
			}
			if ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && ic.TypeCode.Type() == layers.ICMPv4TypeEchoReply {
				replies4 = true
			}
			if ic, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok && ic.TypeCode.Type() == layers.ICMPv6TypeEchoReply {
				replies6 = true
			}
		}
		return replies4 && replies6
	})
	if n := ep.Source().Answered.Load(); n < 2 {
		t.Errorf("%d resolutions answered, want at least 2 (ARP and NDP)", n)
	}

	// An address the capture never sent from is left to time out.
	var n replayNeighbours
	req := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(req).Encode(&header.EthernetFields{SrcAddr: own, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(req[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), own)
	copy(a.ProtocolAddressSender(), own4)
	copy(a.ProtocolAddressTarget(), sender4)
	if _, ok := n.answer(req); ok {
		t.Error("an ARP request for an address no frame came from was answered")
	}
}
