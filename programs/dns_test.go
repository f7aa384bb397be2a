package programs_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/ustack/ustack/internal/testdns"
)

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
func digCases(srv *testdns.Server) []struct {
	name  string
	flags []string
	args  []string
} {
	return []struct {
		name  string
		flags []string
		args  []string
	}{
		{"gateway 10.0.2.2", nil, []string{"@10.0.2.2", "-p", fmt.Sprint(srv.Port)}},
		{"stack DNS 10.0.2.3", []string{"--dns-upstream", fmt.Sprintf("127.0.0.1:%d", srv.Port)}, []string{"@10.0.2.3"}},
	}
}

// testDig runs dig under 'ustack run' for a name only the test's server
// knows; tcp selects +tcp. The answer must be the server's and the server
// must have seen the question over that transport.
func testDig(t *testing.T, tcp bool) {
	need(t, "dig")
	name, v4, _ := testName()
	srv := testdns.New(t, map[string][]netip.Addr{name: {v4}})
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
			if !srv.Asked(name, dnsmessage.TypeA, network) {
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
	need(t, "mount")
	needRoot(t, "a mount namespace to give getent a resolv.conf naming 10.0.2.3")
	name, v4, v6 := testName()
	srv := testdns.New(t, map[string][]netip.Addr{name: {v4, v6}})
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "nameserver 10.0.2.3\noptions timeout:10 attempts:1 " + resolvOptions + "\n"
	if err := os.WriteFile(resolv, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount --bind %s /etc/resolv.conf && exec %s run --dns-upstream 127.0.0.1:%d -- getent ahosts %s",
		resolv, ustackBin, srv.Port, strings.TrimSuffix(name, "."))
	p := start(t, nil, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	p.mustSucceed(60 * time.Second)
	out := p.stdout.String()
	for _, a := range []netip.Addr{v4, v6} {
		if !strings.Contains(out, a.String()+" ") {
			t.Errorf("getent's answer lacks %s:\n%s", a, out)
		}
	}
	for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
		if !srv.Asked(name, typ, network) {
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
	srv := testdns.New(t, map[string][]netip.Addr{name: {v4}})
	for _, network := range []string{"udp", "tcp"} {
		args := []string{"+tries=1", "+time=10", "@127.0.0.1", "-p", fmt.Sprint(srv.Port), name, "A", "+short"}
		if network == "tcp" {
			args = append(args, "+tcp")
		}
		out, err := exec.Command(dig, args...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != v4.String() {
			t.Fatalf("dig over %s: %v: %q, want %q", network, err, out, v4)
		}
		if !srv.Asked(name, dnsmessage.TypeA, network) {
			t.Fatalf("the server was not asked over %s; it saw %v", network, srv)
		}
	}
}
