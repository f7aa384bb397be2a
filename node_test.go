package ustack_test

import (
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/link"
)

func mac(n byte) tcpip.LinkAddress { return tcpip.LinkAddress([]byte{0x52, 0x54, 0x00, 0xee, 0x00, n}) }

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// routedNodes builds rump's routing setup in one process: h1 on 10.0.1.0/24,
// h2 on 10.0.2.0/24, and the router r1 between them, each subnet with an
// IPv6 prefix too. The hosts' default routes point at the router.
func routedNodes(t *testing.T) (h1, r1, h2 *ustack.Stack) {
	t.Helper()
	const mtu = 1500 + header.EthernetMinimumSize
	h1e, r1a := link.NewPair(mtu, mac(1), mac(2))
	r1b, h2e := link.NewPair(mtu, mac(3), mac(4))
	var err error
	r1, err = ustack.NewNode(ustack.NodeConfig{
		Label: "router",
		Interfaces: []ustack.NodeInterface{
			{Name: "eth0", Link: r1a, Addrs: prefixes("10.0.1.1/24", "fd01::1/64")},
			{Name: "eth1", Link: r1b, Addrs: prefixes("10.0.2.1/24", "fd02::1/64")},
		},
		Forwarding: true,
	})
	if err != nil {
		h1e.Close()
		h2e.Close()
		t.Fatalf("router: %v", err)
	}
	t.Cleanup(func() { r1.Close() })
	host := func(l *link.PairEnd, addrs []netip.Prefix, gw4, gw6 string) *ustack.Stack {
		s, err := ustack.NewNode(ustack.NodeConfig{
			Interfaces: []ustack.NodeInterface{{Name: "eth0", Link: l, Addrs: addrs}},
			Routes: []ustack.Route{
				{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr(gw4)},
				{Dst: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr(gw6)},
			},
		})
		if err != nil {
			t.Fatalf("host: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	h1 = host(h1e, prefixes("10.0.1.10/24", "fd01::10/64"), "10.0.1.1", "fd01::1")
	h2 = host(h2e, prefixes("10.0.2.10/24", "fd02::10/64"), "10.0.2.1", "fd02::1")
	return h1, r1, h2
}

// ipv4ForwardingRaces says why IPv4 through a router is left out under the
// race detector: the pinned netstack's IPv4 forwarding
// (ipv4.endpoint.forwardPacketWithRoute) reads the TTL from the received
// header after DeepCopyForForwarding has released the memory that holds it,
// which the detector reports whenever a pool hands that memory out again at
// once. IPv6 forwarding reads its hop limit before the copy.
const ipv4ForwardingRaces = "under -race only IPv6 is forwarded: the pinned netstack's IPv4 forwarding reads the TTL from memory it has released (see ipv4ForwardingRaces)"

func TestNodeRoutes(t *testing.T) {
	h1, r1, h2 := routedNodes(t)
	type path struct{ network, addr string }
	pings := []path{{"icmp", "10.0.2.10"}, {"icmp6", "fd02::10"}, {"icmp", "10.0.2.1"}}
	transfers := []path{{"tcp4", "10.0.2.10"}, {"tcp6", "fd02::10"}}
	if raceEnabled {
		t.Log(ipv4ForwardingRaces)
		pings, transfers = []path{{"icmp6", "fd02::10"}, {"icmp", "10.0.2.1"}}, []path{{"tcp6", "fd02::10"}}
	}
	for _, p := range pings {
		testPing(t, h1, p.network, p.addr)
	}
	for _, tc := range transfers {
		c, s := connect(t, h1, h2, tc.network, tc.addr)
		const size = 8 << 20
		done := make(chan [32]byte, 1)
		go func() {
			w := newHashingWriter()
			io.Copy(w, s)
			done <- w.Sum()
		}()
		want := sha256.New()
		if _, err := io.Copy(io.MultiWriter(c, want), stream(7, size)); err != nil {
			t.Fatalf("%s: sending: %v", tc.network, err)
		}
		c.(closeWriter).CloseWrite()
		if got := <-done; got != [32]byte(want.Sum(nil)) {
			t.Fatalf("%s: the SHA-256 of what arrived through the router differs from what was sent", tc.network)
		}
	}
	fwd := r1.Netstack().Stats().IP.Forwarding
	if got := r1.Netstack().Stats().IP.PacketsReceived.Value(); got == 0 || fwd.Errors.Value() != 0 {
		t.Errorf("router: %d packets received, %d forwarding errors", got, fwd.Errors.Value())
	}
	if got := r1.Attachment().String(); got != "router" {
		t.Errorf("router's attachment %q, want its label", got)
	}
	if m := r1.FrameMirrors(); m["eth0"] == nil || m["eth1"] == nil || len(m) != 2 {
		t.Errorf("router's mirrors %v, want eth0 and eth1", m)
	}
}

// A host without forwarding does not route for others.
func TestNodeWithoutForwarding(t *testing.T) {
	const mtu = 1500 + header.EthernetMinimumSize
	ha, ma := link.NewPair(mtu, mac(1), mac(2))
	mb, hb := link.NewPair(mtu, mac(3), mac(4))
	middle, err := ustack.NewNode(ustack.NodeConfig{Interfaces: []ustack.NodeInterface{
		{Name: "eth0", Link: ma, Addrs: prefixes("10.0.1.1/24")},
		{Name: "eth1", Link: mb, Addrs: prefixes("10.0.2.1/24")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer middle.Close()
	a, err := ustack.NewNode(ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth0", Link: ha, Addrs: prefixes("10.0.1.10/24")}},
		Routes: []ustack.Route{{Dst: netip.MustParsePrefix("10.0.2.0/24"), Via: netip.MustParseAddr("10.0.1.1")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ustack.NewNode(ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth0", Link: hb, Addrs: prefixes("10.0.2.10/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	testPing(t, a, "icmp", "10.0.1.1")
	pc, err := a.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("10.0.2.10"), Port: 9}); err != nil {
		t.Fatal(err)
	}
	// The datagram reached the middle node, which did not forward it.
	waitFor(t, "the middle node to drop the datagram", func() bool {
		return middle.Netstack().Stats().IP.InvalidDestinationAddressesReceived.Value() > 0
	})
	if got := b.Netstack().Stats().IP.PacketsReceived.Value(); got != 0 {
		t.Errorf("b received %d packets through a node without forwarding", got)
	}
}

func TestNodeConfigErrors(t *testing.T) {
	pairEnd := func() *link.PairEnd { a, b := link.NewPair(1514, mac(1), mac(2)); b.Close(); return a }
	for _, tc := range []struct {
		name  string
		cfg   func() ustack.NodeConfig
		field string
		want  string
	}{
		{"no interfaces", func() ustack.NodeConfig { return ustack.NodeConfig{} }, "Interfaces", "at least one"},
		{"bad name", func() ustack.NodeConfig {
			return ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth 0", Link: pairEnd()}}}
		}, "Interfaces[0].Name", "not an interface name"},
		{"twice", func() ustack.NodeConfig {
			return ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth0", Link: pairEnd()}, {Name: "eth0", Link: pairEnd()}}}
		}, "Interfaces[1].Name", "twice"},
		{"no link", func() ustack.NodeConfig {
			return ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth0"}}}
		}, "Interfaces[0]", "either Link or NAT"},
		{"gateway not a neighbour", func() ustack.NodeConfig {
			return ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth0", Link: pairEnd(), Addrs: prefixes("10.0.1.10/24")}},
				Routes: []ustack.Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("10.9.9.9")}}}
		}, "Routes[0]", "no interface's subnet holds 10.9.9.9"},
		{"unknown dev", func() ustack.NodeConfig {
			return ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth0", Link: pairEnd()}},
				Routes: []ustack.Route{{Dst: netip.MustParsePrefix("10.2.0.0/16"), Dev: "eth7"}}}
		}, "Routes[0]", "no interface eth7"},
		{"family", func() ustack.NodeConfig {
			return ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth0", Link: pairEnd(), Addrs: prefixes("10.0.1.10/24")}},
				Routes: []ustack.Route{{Dst: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("10.0.1.1")}}}
		}, "Routes[0]", "family"},
		{"cc", func() ustack.NodeConfig {
			return ustack.NodeConfig{Interfaces: []ustack.NodeInterface{{Name: "eth0", Link: pairEnd()}}, TCP: ustack.TCPOptions{CongestionControl: "nosuch"}}
		}, "TCP.CongestionControl", "nosuch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ustack.NewNode(tc.cfg())
			if err == nil {
				s.Close()
				t.Fatal("NewNode accepted it")
			}
			var ce *ustack.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want a ConfigError of field %s saying %q", err, tc.field, tc.want)
			}
		})
	}
}

// waitFor polls cond, which reads something observable, until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}
