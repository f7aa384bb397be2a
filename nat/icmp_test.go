package nat

import (
	"bytes"
	"testing"

	"golang.org/x/net/icmp"
	xipv4 "golang.org/x/net/ipv4"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// echoFrame builds an Ethernet+IPv4 echo request frame.
func echoFrame(t testing.TB, id, seq int, data []byte) []byte {
	msg, err := (&icmp.Message{Type: xipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}).Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+len(msg))
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: "\x52\x54\x00\x12\x34\x56", DstAddr: "\x52\x55\x0a\x00\x02\x02", Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + len(msg)), TTL: 64, Protocol: 1,
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 0, 2, 15}), DstAddr: tcpip.AddrFrom4([4]byte{10, 0, 2, 2})})
	copy(frame[header.EthernetMinimumSize+header.IPv4MinimumSize:], msg)
	return frame
}

func parseFrame(b []byte) (echoRequest, bool) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	defer pkt.DecRef()
	return parseEchoRequest(pkt)
}

func TestParseEchoRequest(t *testing.T) {
	frame := echoFrame(t, 0x1234, 7, []byte("payload"))
	req, ok := parseFrame(frame)
	if !ok || req.id != 0x1234 || req.seq != 7 || !bytes.Equal(req.payload, []byte("payload")) || req.dst.String() != "10.0.2.2" {
		t.Fatalf("parse = %+v, %v", req, ok)
	}
	// Every truncation of a valid frame is rejected, not read past its end.
	for n := 0; n < len(frame); n++ {
		if _, ok := parseFrame(frame[:n]); ok {
			t.Errorf("a frame cut to %d of %d bytes was accepted", n, len(frame))
		}
	}
}

// FuzzParseEchoRequest: arbitrary frames never crash the parser, and what
// it accepts has a payload that fits in the frame.
func FuzzParseEchoRequest(f *testing.F) {
	f.Add(echoFrame(f, 1, 1, []byte("x")))
	f.Add(echoFrame(f, 2, 2, bytes.Repeat([]byte{0xff}, 1000)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, ok := parseFrame(b)
		if ok && len(req.payload) > len(b) {
			t.Fatalf("payload of %d bytes from a %d-byte frame", len(req.payload), len(b))
		}
	})
}
