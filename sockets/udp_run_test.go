package sockets_test

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testdns"
)

func itoa(n int) string { return strconv.Itoa(n) }

// startDNS runs a DNS server on the host's loopback that knows
// ustack.test; it returns its port.
func startDNS(t *testing.T) int {
	return testdns.New(t, map[string][]netip.Addr{"ustack.test.": {netip.MustParseAddr("192.0.2.7")}}).Port
}

// udpEchoServer echoes every datagram on 127.0.0.1 and reports the source
// address of the first one.
func udpEchoServer(t *testing.T) (port int, firstFrom <-chan net.Addr) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	from := make(chan net.Addr, 1)
	go func() {
		buf := make([]byte, 70000)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case from <- a:
			default:
			}
			pc.WriteTo(buf[:n], a)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port, from
}

// TestUDPNetprog: a static Go program's UDP client (unconnected: WriteTo
// and ReadFrom, that is sendto and recvfrom with addresses; then
// connected: write and read) reaches a host echo server through nat, with
// datagrams from 1 byte to the largest IPv4 one.
func TestUDPNetprog(t *testing.T) {
	port, from := udpEchoServer(t)
	out, stderr, code := ustackRun(t, 30*time.Second, nil, netprogBin, "udp-echo", "10.0.2.2:"+itoa(port))
	if code != 0 {
		t.Fatalf("netprog udp-echo exited %d: %s%s", code, out, stderr)
	}
	if want := "udp-echo ok"; !strings.Contains(out, want) {
		t.Fatalf("netprog said %q, want %q; stderr: %s", out, want, stderr)
	}
	select {
	case a := <-from:
		// The nat gateway relays from the host's loopback.
		if ip := a.(*net.UDPAddr).IP; !ip.IsLoopback() {
			t.Errorf("the host saw the datagram from %v, want a loopback address", a)
		}
	default:
		t.Error("the host echo server saw no datagram")
	}
}

// TestPing: iputils ping, unprivileged, uses an ICMP echo socket on the
// stack; the replies come from the host through nat. Each reply's TTL or
// hop limit comes from its IP_TTL or IPV6_HOPLIMIT control message (ping
// prints ttl=0 without one).
func TestPing(t *testing.T) {
	ping := need(t, "ping")
	for _, dst := range []string{"10.0.2.2", "fd00::2"} {
		out, stderr, code := ustackRun(t, 30*time.Second, nil, ping, "-c", "3", "-i", "0.2", "-W", "3", dst)
		if code != 0 {
			t.Fatalf("ping %s exited %d: %s%s", dst, code, out, stderr)
		}
		if !regexp.MustCompile(`3 packets transmitted, 3 received`).MatchString(out) {
			t.Errorf("ping %s: want 3 of 3 replies:\n%s", dst, out)
		}
		if n := len(regexp.MustCompile(`icmp_seq=\d+ ttl=64 `).FindAllString(out, -1)); n != 3 {
			t.Errorf("ping %s: %d replies with ttl=64, want 3:\n%s", dst, n, out)
		}
	}
}

// TestDigOverUDPAndTCP: dig, over UDP and with +tcp, through the stack's
// resolver address 10.0.2.3 to the host's resolvers; a name that is
// answered locally by every resolver is not needed, only an answer.
func TestDigOverUDPAndTCP(t *testing.T) {
	dig := need(t, "dig")
	port := startDNS(t)
	for _, proto := range []string{"+notcp", "+tcp"} {
		out, stderr, code := ustackRun(t, 30*time.Second, []string{"--dns-upstream", "127.0.0.1:" + itoa(port)},
			dig, proto, "+time=3", "+tries=1", "@10.0.2.3", "ustack.test", "A")
		if code != 0 {
			t.Fatalf("dig %s exited %d: %s%s", proto, code, out, stderr)
		}
		if !strings.Contains(out, "ustack.test.") || !strings.Contains(out, "192.0.2.7") {
			t.Errorf("dig %s: no answer 192.0.2.7 in:\n%s", proto, out)
		}
	}
}

// TestGetentThroughStackDNS: glibc's resolver (connect, sendmmsg, then
// recvfrom with an address) resolves through the stack.
func TestGetentThroughStackDNS(t *testing.T) {
	getent := need(t, "getent")
	port := startDNS(t)
	out, stderr, code := ustackRun(t, 30*time.Second, []string{"--dns-upstream", "127.0.0.1:" + itoa(port)},
		getent, "ahostsv4", "ustack.test")
	if code != 0 {
		t.Fatalf("getent exited %d: %s%s", code, out, stderr)
	}
	if !strings.Contains(out, "192.0.2.7") {
		t.Errorf("getent: want 192.0.2.7 in:\n%s", out)
	}
}
