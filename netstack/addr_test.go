package netstack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
)

func TestAddressConversions(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   netip.Addr
		want tcpip.Address
		back netip.Addr // NetipAddr(want)
	}{
		{"ipv4", netip.MustParseAddr("10.0.2.15"), tcpip.AddrFrom4([4]byte{10, 0, 2, 15}), netip.MustParseAddr("10.0.2.15")},
		{"ipv6", netip.MustParseAddr("fd00::15"), tcpip.AddrFrom16([16]byte{0xfd, 15: 0x15}), netip.MustParseAddr("fd00::15")},
		{"ipv4-mapped comes back as ipv4", netip.MustParseAddr("::ffff:10.0.2.2"),
			tcpip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 10, 13: 0, 14: 2, 15: 2}), netip.MustParseAddr("10.0.2.2")},
		{"zone dropped", netip.MustParseAddr("fe80::1%eth0"), tcpip.AddrFrom16([16]byte{0xfe, 0x80, 15: 1}), netip.MustParseAddr("fe80::1")},
		{"invalid is any", netip.Addr{}, tcpip.Address{}, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Address(tc.in)
			if got != tc.want {
				t.Errorf("Address(%v) = %v, want %v", tc.in, got, tc.want)
			}
			if back := NetipAddr(got); back != tc.back {
				t.Errorf("NetipAddr(%v) = %v, want %v", got, back, tc.back)
			}
			ap := netip.AddrPortFrom(tc.in, 8080)
			fa := FullAddress(ap)
			if fa.Addr != tc.want || fa.Port != 8080 || fa.NIC != 0 {
				t.Errorf("FullAddress(%v) = %+v", ap, fa)
			}
			if got := NetipAddrPort(fa.Addr, fa.Port); got != netip.AddrPortFrom(tc.back, 8080) {
				t.Errorf("NetipAddrPort(%v, 8080) = %v, want %v", fa.Addr, got, netip.AddrPortFrom(tc.back, 8080))
			}
		})
	}
}
