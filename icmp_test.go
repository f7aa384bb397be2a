package ustack_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/ustack/ustack"
)

// testPing sends three echo requests from s to the address to over an
// ICMP socket of network ("icmp" or "icmp6") and checks each reply.
func testPing(t *testing.T, s *ustack.Stack, network, to string) {
	t.Helper()
	pc, err := s.ListenPacket(network, "")
	if err != nil {
		t.Fatalf("ListenPacket(%q): %v", network, err)
	}
	defer pc.Close()
	var typ icmp.Type = ipv4.ICMPTypeEcho
	proto := 1
	if network == "icmp6" {
		typ, proto = ipv6.ICMPTypeEchoRequest, 58
	}
	dst := &net.IPAddr{IP: net.ParseIP(to)}
	for seq := 1; seq <= 3; seq++ {
		payload := bytes.Repeat([]byte{byte(seq)}, 56+seq)
		req, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0, Seq: seq, Data: payload}}).Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.WriteTo(req, dst); err != nil {
			t.Fatalf("WriteTo %v: %v", dst, err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("ReadFrom: %v", err)
		}
		if addrIP(from).String() != to {
			t.Errorf("reply from %v, want %s", from, to)
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			t.Fatalf("parsing reply: %v", err)
		}
		if m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply {
			t.Fatalf("reply type %v, want echo reply", m.Type)
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok {
			t.Fatalf("reply body %T, want *icmp.Echo", m.Body)
		}
		if echo.Seq != seq || !bytes.Equal(echo.Data, payload) {
			t.Errorf("reply seq %d with %d bytes, want seq %d with the %d bytes sent", echo.Seq, len(echo.Data), seq, len(payload))
		}
	}
}
