package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/lab"
)

// The capture's sender, on r1's eth0 subnet.
var (
	senderMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x09}
	senderIP  = net.IP{10, 1, 0, 9}
	r1IP      = net.IP{10, 1, 0, 1}
	// Another machine's MAC: the lab rewrites it to r1's eth0's.
	capturedMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
)

// frame serializes an Ethernet frame from the sender.
func frame(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ipv4(proto layers.IPProtocol, dst net.IP) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: senderIP, DstIP: dst}
}

func eth(typ layers.EthernetType, dst net.HardwareAddr) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: senderMAC, DstMAC: dst, EthernetType: typ}
}

func udpFrame(t *testing.T, dst net.IP, sport, dport int) []byte {
	ip := ipv4(layers.IPProtocolUDP, dst)
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	return frame(t, eth(layers.EthernetTypeIPv4, capturedMAC), ip, udp, gopacket.Payload("x"))
}

// writeCapture writes the records, a millisecond apart, as an Ethernet
// pcap file.
func writeCapture(t *testing.T, path string, records [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, rec := range records {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)*int64(time.Millisecond)), CaptureLength: len(rec), Length: len(rec)}
		if err := w.WritePacket(ci, rec); err != nil {
			t.Fatal(err)
		}
	}
}

// outHolds reports whether the pcap file at path holds, so far, a frame
// for which match is true.
func outHolds(path string, match func(gopacket.Packet) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return false
	}
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return false // the end, or a record being written
		}
		if match(gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)) {
			return true
		}
	}
}

// TestPcapLinkThroughFilter replays a crafted capture into a router with
// filter rules through a pcap link, while a trace runs on the router: each
// packet's fate shows in the rules' counters, in what the router sent back
// (out.pcap, read with tshark) and in the trace's rule records.
func TestPcapLinkThroughFilter(t *testing.T) {
	testbin.EndToEnd(t)
	tshark := testprog.Need(t, "tshark")
	path := writeTopology(t, `
name: pcaplab
topology:
  nodes:
    r1:
      kind: router
      interfaces: {eth0: 10.1.0.1/24, eth1: 10.2.0.1/24}
      filter:
        - -A INPUT -p udp --dport 9 -j DROP
        - -A INPUT -p tcp --dport 22 -j REJECT
        - -A FORWARD -p udp --dport 9 -j DROP
    h2: {interfaces: {eth0: 10.2.0.2/24}, routes: [default via 10.2.0.1]}
  links:
    - type: pcap
      endpoint: r1:eth0
      file: in.pcap
      out: out.pcap
      speed: max
    - endpoints: [r1:eth1, h2:eth0]
`)
	dir := filepath.Dir(path)
	out := filepath.Join(dir, "out.pcap")
	const udpSent = 3
	// r1 learns the sender's MAC from its ARP request; without it r1 could
	// answer nothing but its own ARP requests into the void.
	arp := frame(t, eth(layers.EthernetTypeARP, layers.EthernetBroadcast), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest, SourceHwAddress: senderMAC, SourceProtAddress: senderIP,
		DstHwAddress: make([]byte, 6), DstProtAddress: r1IP})
	records := [][]byte{arp, {0xde, 0xad, 0xbe, 0xef, 0}} // the second is malformed: shorter than an Ethernet header
	for i := range udpSent {
		records = append(records, udpFrame(t, r1IP, 5000+i, 9))
	}
	synIP := ipv4(layers.IPProtocolTCP, r1IP)
	syn := &layers.TCP{SrcPort: 40000, DstPort: 22, Seq: 1000, SYN: true, Window: 65535}
	syn.SetNetworkLayerForChecksum(synIP)
	records = append(records, frame(t, eth(layers.EthernetTypeIPv4, capturedMAC), synIP, syn))
	records = append(records, udpFrame(t, net.IP{10, 2, 0, 2}, 5100, 9)) // to be forwarded, and dropped
	records = append(records, frame(t, eth(layers.EthernetTypeIPv4, capturedMAC), ipv4(layers.IPProtocolICMPv4, r1IP),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}, gopacket.Payload("ping")))
	writeCapture(t, filepath.Join(dir, "in.pcap"), records)

	l, _ := upLabWith(t, path, "", lab.Options{HoldReplays: true})
	ctx := context.Background()
	r1 := control.Dial(lab.NodeSocketName("pcaplab", "r1"))
	resp, err := r1.Stream(ctx, "/v1/trace?filter=10.1.0.9")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	testwait.ForNil(t, "the trace to subscribe to r1's filter verdicts", func() error {
		var subs api.Subscribers
		if err := r1.Get(ctx, "/v1/subscribers", &subs); err != nil {
			return err
		}
		if subs.Rules != 1 {
			return fmt.Errorf("subscribers %+v", subs)
		}
		return nil
	})
	l.StartReplays()

	testwait.ForNil(t, "the capture to be replayed", func() error {
		p := l.Status().Links[0].Pcap
		if p.State != "done" {
			return fmt.Errorf("replay %+v", *p)
		}
		return nil
	})
	if p := l.Status().Links[0].Pcap; p.Replayed != uint64(len(records)-1) || p.Skipped != 1 {
		t.Errorf("replay %+v; want %d replayed, 1 skipped", *p, len(records)-1)
	}
	isRST := func(p gopacket.Packet) bool {
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		return ok && tcp.RST && tcp.SrcPort == 22 && tcp.DstPort == 40000
	}
	isReply := func(p gopacket.Packet) bool {
		icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return ok && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply && icmp.Id == 7
	}
	testwait.For(t, "out.pcap to hold r1's reset and echo reply", func() bool { return outHolds(out, isRST) && outHolds(out, isReply) })

	// The real reader agrees.
	resets := testprog.TsharkFields(t, tshark, out, "tcp.flags.reset==1 && ip.src==10.1.0.1 && ip.dst==10.1.0.9", "tcp.srcport", "tcp.dstport")
	replies := testprog.TsharkFields(t, tshark, out, "icmp.type==0 && ip.src==10.1.0.1 && ip.dst==10.1.0.9", "icmp.ident", "icmp.seq")
	udpOut := testprog.TsharkFields(t, tshark, out, "udp || icmp.type==3", "frame.number")
	if strings.Join(resets, ";") != "22\t40000" || strings.Join(replies, ";") != "7\t1" || len(udpOut) != 0 {
		all, _ := exec.Command(tshark, "-n", "-r", out).Output()
		t.Errorf("out.pcap: resets %q, echo replies %q, UDP or unreachables %q; want one reset 22->40000, one reply 7/1, nothing else\n%s", resets, replies, udpOut, all)
	}

	node, err := (&lab.Client{Name: "pcaplab"}).Node(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, c := range node.Filter {
		got = append(got, c.Packets)
	}
	if fmt.Sprint(got) != fmt.Sprint([]uint64{udpSent, 1, 1}) {
		t.Errorf("rule counters %+v, want %d, 1, 1", node.Filter, udpSent)
	}
	policy := map[string]uint64{}
	for _, c := range node.Policy {
		policy[c.Rule] = c.Packets
	}
	if policy["-P INPUT ACCEPT"] < 1 || policy["-P OUTPUT ACCEPT"] < 1 || len(node.Policy) != 3 {
		t.Errorf("policy counters %+v, want INPUT's and OUTPUT's to have counted the ping", node.Policy)
	}

	// Stop the trace; it writes what it has and its end record.
	if err := r1.Post(ctx, "/v1/trace/stop?id="+resp.Header.Get(api.TraceIDHeader), http.StatusNoContent); err != nil {
		t.Fatal(err)
	}
	var rules []string
	var end api.EndRecord
	for line := range lines {
		var k struct{ Kind string }
		if err := json.Unmarshal([]byte(line), &k); err != nil {
			t.Fatalf("trace line %q: %v", line, err)
		}
		switch k.Kind {
		case "rule":
			var r api.RuleRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r.Table != "filter" || r.Len == 0 || r.T < 0 {
				t.Errorf("rule record %s", line)
			}
			rules = append(rules, fmt.Sprintf("%s %d %s %s %s>%s", r.Chain, r.Index, r.Verdict, r.Proto, r.Src, r.Dst))
		case "end":
			json.Unmarshal([]byte(line), &end)
		}
	}
	want := []string{
		"INPUT 1 DROP udp 10.1.0.9:5000>10.1.0.1:9",
		"INPUT 1 DROP udp 10.1.0.9:5001>10.1.0.1:9",
		"INPUT 1 DROP udp 10.1.0.9:5002>10.1.0.1:9",
		"INPUT 2 REJECT tcp 10.1.0.9:40000>10.1.0.1:22",
		"FORWARD 1 DROP udp 10.1.0.9:5100>10.2.0.2:9",
		"INPUT 0 ACCEPT icmp 10.1.0.9>10.1.0.1",
		"OUTPUT 0 ACCEPT icmp 10.1.0.1>10.1.0.9",
	}
	if strings.Join(rules, "\n") != strings.Join(want, "\n") {
		t.Errorf("rule records:\n%s\nwant:\n%s", strings.Join(rules, "\n"), strings.Join(want, "\n"))
	}
	if end.Kind != "end" || end.Rules != uint64(len(rules)) || end.Dropped != 0 {
		t.Errorf("end record %+v, want %d rule records, none dropped", end, len(rules))
	}
}

// A capture that does not introduce its sender (no ARP request of its
// own) still gets its answers: the pcap link answers the router's ARP
// request for the sender with the MAC the sender's frames came from, and
// out.pcap records the request and then the echo reply.
func TestPcapLinkAnswersSendersResolution(t *testing.T) {
	testbin.EndToEnd(t)
	path := writeTopology(t, `
name: pcaparp
topology:
  nodes:
    r1: {kind: router, interfaces: {eth0: 10.1.0.1/24}}
  links:
    - {type: pcap, endpoint: r1:eth0, file: in.pcap, out: out.pcap, speed: max}
`)
	dir := filepath.Dir(path)
	writeCapture(t, filepath.Join(dir, "in.pcap"), [][]byte{frame(t, eth(layers.EthernetTypeIPv4, capturedMAC), ipv4(layers.IPProtocolICMPv4, r1IP),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1})})
	l, _ := upLab(t, path, "")
	out := filepath.Join(dir, "out.pcap")
	testwait.For(t, "out.pcap to hold r1's echo reply to the sender's MAC", func() bool {
		return outHolds(out, func(p gopacket.Packet) bool {
			e, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			return ok && e != nil && bytes.Equal(e.DstMAC, senderMAC) && ic.TypeCode.Type() == layers.ICMPv4TypeEchoReply && ic.Id == 7
		})
	})
	if !outHolds(out, func(p gopacket.Packet) bool {
		a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		return ok && a.Operation == layers.ARPRequest && net.IP(a.DstProtAddress).Equal(senderIP)
	}) {
		t.Error("out.pcap lacks r1's ARP request for the sender")
	}
	for _, lk := range l.Status().Links {
		if p := lk.Pcap; p != nil && p.Answered < 1 {
			t.Errorf("the pcap link answered %d resolutions, want at least 1", p.Answered)
		}
	}
}
