package programs_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsQuery is one question the test's DNS server was asked.
type dnsQuery struct {
	Name string // fully qualified, lower case
	Type dnsmessage.Type
	Net  string // "udp" or "tcp"
}

// dnsServer is an authoritative server for a few names, on the host's
// loopback, over UDP and TCP on the same port. It records every question,
// so a test can tell that a program's query really reached it.
type dnsServer struct {
	port int
	zone map[string][]netip.Addr // name -> its addresses (A and AAAA)

	mu      sync.Mutex
	queries []dnsQuery
}

// newDNSServer serves zone until the test ends.
func newDNSServer(t testing.TB, zone map[string][]netip.Addr) *dnsServer {
	t.Helper()
	// One port for both transports: take a free UDP port, then TCP on it.
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	s := &dnsServer{port: pc.LocalAddr().(*net.UDPAddr).Port, zone: map[string][]netip.Addr{}}
	for name, addrs := range zone {
		s.zone[strings.ToLower(name)] = addrs
	}
	t.Cleanup(func() { pc.Close(); l.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if answer := s.answer(buf[:n], "udp"); answer != nil {
				pc.WriteTo(answer, from)
			}
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serveTCP(c)
		}
	}()
	return s
}

// serveTCP answers length-prefixed queries (RFC 1035 4.2.2) until EOF.
func (s *dnsServer) serveTCP(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	for {
		var n uint16
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		answer := s.answer(q, "tcp")
		if answer == nil {
			return
		}
		if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(answer)))); err != nil {
			return
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// answer records the question of msg and builds the reply: the zone's
// addresses of the asked type, NXDOMAIN for names outside the zone.
func (s *dnsServer) answer(msg []byte, network string) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	s.mu.Lock()
	s.queries = append(s.queries, dnsQuery{name, q.Type, network})
	s.mu.Unlock()

	addrs, known := s.zone[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: dnsmessage.ClassINET, TTL: 60}
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// asked reports whether the server was asked for name's records of type
// typ over network.
func (s *dnsServer) asked(name string, typ dnsmessage.Type, network string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.queries, dnsQuery{strings.ToLower(name), typ, network})
}

func (s *dnsServer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.queries)
}

// testName is a name nobody else asks for, with an address from the
// documentation range, so that an answer can only have come from the
// test's server.
func testName() (string, netip.Addr, netip.Addr) {
	n := rand.IntN(1 << 16)
	v4 := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + n%250)})
	v6 := netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", n))
	return fmt.Sprintf("h%d.progs.ustack.test.", n), v4, v6
}

// digCases are the two ways a program on the stack reaches a DNS server on
// the host: the gateway address with the server's port, or the stack's DNS
// address 10.0.2.3 port 53, forwarded to --dns-upstream.
func digCases(srv *dnsServer) []struct {
	name  string
	flags []string
	args  []string
} {
	return []struct {
		name  string
		flags []string
		args  []string
	}{
		{"gateway 10.0.2.2", nil, []string{"@10.0.2.2", "-p", fmt.Sprint(srv.port)}},
		{"stack DNS 10.0.2.3", []string{"--dns-upstream", fmt.Sprintf("127.0.0.1:%d", srv.port)}, []string{"@10.0.2.3"}},
	}
}

// testDig runs dig under 'ustack run' for a name only the test's server
// knows; tcp selects +tcp. The answer must be the server's and the server
// must have seen the question over that transport.
func testDig(t *testing.T, tcp bool) {
	need(t, "dig")
	name, v4, _ := testName()
	srv := newDNSServer(t, map[string][]netip.Addr{name: {v4}})
	network := "udp"
	if tcp {
		network = "tcp"
	}
	for _, c := range digCases(srv) {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"dig", "+tries=1", "+time=10"}, c.args...)
			if tcp {
				args = append(args, "+tcp")
			}
			args = append(args, name, "A", "+short")
			p := run(t, c.flags, args...)
			p.mustSucceed(60 * time.Second)
			if got := strings.TrimSpace(p.stdout.String()); got != v4.String() {
				t.Fatalf("dig answered %q, want %q; stderr:\n%s", got, v4, p.stderr.String())
			}
			if !srv.asked(name, dnsmessage.TypeA, network) {
				t.Fatalf("the server was not asked %s A over %s; it saw %v", name, network, srv)
			}
		})
	}
}

func TestDigTCP(t *testing.T) { testDig(t, true) }

// testGetent runs 'getent ahosts NAME' under 'ustack run' with the stack's
// DNS address 10.0.2.3 as the only nameserver (a resolv.conf bind-mounted
// in a mount namespace of the test's own, hence root) and --dns-upstream
// pointing at the test's server. resolvOptions goes on resolv.conf's
// options line (use-vc makes glibc ask over TCP).
func testGetent(t *testing.T, resolvOptions, network string) {
	need(t, "getent")
	need(t, "unshare")
	needRoot(t, "a mount namespace to give getent a resolv.conf naming 10.0.2.3")
	name, v4, v6 := testName()
	srv := newDNSServer(t, map[string][]netip.Addr{name: {v4, v6}})
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "nameserver 10.0.2.3\noptions timeout:10 attempts:1 " + resolvOptions + "\n"
	if err := os.WriteFile(resolv, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount --bind %s /etc/resolv.conf && exec %s run --dns-upstream 127.0.0.1:%d -- getent ahosts %s",
		resolv, ustackBin, srv.port, strings.TrimSuffix(name, "."))
	p := start(t, nil, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	p.mustSucceed(60 * time.Second)
	out := p.stdout.String()
	for _, a := range []netip.Addr{v4, v6} {
		if !strings.Contains(out, a.String()+" ") {
			t.Errorf("getent's answer lacks %s:\n%s", a, out)
		}
	}
	for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
		if !srv.asked(name, typ, network) {
			t.Errorf("the server was not asked %s %v over %s; it saw %v", name, typ, network, srv)
		}
	}
}

// TestGetentTCP: glibc's resolver over TCP (options use-vc) through the
// stack's DNS address.
func TestGetentTCP(t *testing.T) { testGetent(t, "use-vc", "tcp") }

// TestDNSServerOnKernel is the control for the tests above: dig on the
// kernel, straight to the test's server, over UDP and TCP. When it passes
// and a test under 'ustack run' fails, the fault is on the stack's side.
func TestDNSServerOnKernel(t *testing.T) {
	dig := need(t, "dig")
	name, v4, _ := testName()
	srv := newDNSServer(t, map[string][]netip.Addr{name: {v4}})
	for _, network := range []string{"udp", "tcp"} {
		args := []string{"+tries=1", "+time=10", "@127.0.0.1", "-p", fmt.Sprint(srv.port), name, "A", "+short"}
		if network == "tcp" {
			args = append(args, "+tcp")
		}
		out, err := exec.Command(dig, args...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != v4.String() {
			t.Fatalf("dig over %s: %v: %q, want %q", network, err, out, v4)
		}
		if !srv.asked(name, dnsmessage.TypeA, network) {
			t.Fatalf("the server was not asked over %s; it saw %v", network, srv)
		}
	}
}
