package sockets

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestBindable: the addresses bind may name, as Linux decides them for a
// host with eth0 10.0.2.15/24 and fd00::15/64 and lo.
func TestBindable(t *testing.T) {
	ns := stack.New(stack.Options{NetworkProtocols: []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol}})
	defer func() { ns.Close(); ns.Wait() }()
	if err := ns.CreateNIC(1, channel.New(1, 1500, "")); err != nil {
		t.Fatal(err)
	}
	if err := ns.CreateNIC(2, loopback.New()); err != nil {
		t.Fatal(err)
	}
	for nic, addrs := range map[tcpip.NICID][]string{1: {"10.0.2.15/24", "fd00::15/64"}, 2: {"127.0.0.1/8", "::1/128"}} {
		for _, s := range addrs {
			p := netip.MustParsePrefix(s)
			proto := ipv4.ProtocolNumber
			if p.Addr().Is6() {
				proto = ipv6.ProtocolNumber
			}
			pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(p.Addr().AsSlice()).WithPrefix()}
			pa.AddressWithPrefix.PrefixLen = p.Bits()
			if err := ns.AddProtocolAddress(nic, pa, stack.AddressProperties{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"", true},
		{"0.0.0.0", true},
		{"::", true},
		{"10.0.2.15", true},
		{"::ffff:10.0.2.15", true},
		{"fd00::15", true},
		{"10.0.2.255", true}, // the subnet's broadcast
		{"255.255.255.255", true},
		{"224.0.0.251", true},
		{"ff02::fb", true},
		{"127.0.0.1", true},
		{"127.3.4.5", true}, // lo's whole subnet
		{"::1", true},
		{"10.0.2.16", false},
		{"10.0.3.255", false},
		{"192.0.2.1", false},
		{"fd00::16", false},
	} {
		var a tcpip.Address
		if tc.addr != "" {
			a = tcpip.AddrFromSlice(netip.MustParseAddr(tc.addr).AsSlice())
		}
		if got := bindable(ns, a); got != tc.want {
			t.Errorf("bindable(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
