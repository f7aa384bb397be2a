package link

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// frame builds an Ethernet frame of etherType around payload.
func frame(etherType uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	binary.BigEndian.PutUint16(f[12:], etherType)
	return append(f, payload...)
}

// ipv4 builds an IPv4 packet with ihl 32-bit words of header (options are
// zero), the given fragment field and an L4 header l4.
func ipv4(ihl int, proto byte, frag uint16, dst [4]byte, l4 []byte) []byte {
	h := make([]byte, ihl*4)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[6:], frag)
	h[9] = proto
	copy(h[16:], dst[:])
	return append(h, l4...)
}

func ipv6(next byte, dst netip.Addr, l4 []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	h[6] = next
	copy(h[24:], dst.AsSlice())
	return append(h, l4...)
}

// ipv4Src sets the source address of an IPv4 packet.
func ipv4Src(p []byte, src [4]byte) []byte {
	copy(p[12:], src[:])
	return p
}

// icmpQuoting is an ICMP or ICMPv6 message of type typ quoting packet q.
func icmpQuoting(typ byte, q []byte) []byte {
	return append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, q...)
}

// ipv6Src sets the source address of an IPv6 packet.
func ipv6Src(p []byte, src netip.Addr) []byte {
	copy(p[8:], src.AsSlice())
	return p
}

func ports(src, dst uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, src)
	binary.BigEndian.PutUint16(b[2:], dst)
	return b
}

func arp(target [4]byte) []byte {
	b := make([]byte, 28)
	copy(b[24:], target[:])
	return b
}

func TestBuildFilter(t *testing.T) {
	me := [4]byte{10, 79, 0, 2}
	second := [4]byte{10, 79, 0, 3} // the interface's, not the stack's
	other := [4]byte{10, 79, 0, 9}
	me6, second6 := netip.MustParseAddr("fd79::2"), netip.MustParseAddr("fd79::3")
	spec := FilterSpec{
		IPv4: []netip.Addr{netip.AddrFrom4(me)},
		IPv6: []netip.Addr{me6},
		TCP:  []uint16{8080, 40000, 40001, 40002, 40003, 443},
		UDP:  []uint16{53, 40000, 40001, 40002, 40003},
	}
	prog, err := BuildFilter(spec)
	if err != nil {
		t.Fatal(err)
	}
	insns, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatal("the program does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	// Packets the stack sent, as ICMP errors quote them.
	sent4 := func(proto byte, sport uint16) []byte { return ipv4Src(ipv4(5, proto, 0, other, ports(sport, 80)), me) }
	sent4opts := ipv4Src(ipv4(7, 6, 0, other, ports(8080, 80)), me)
	sent6 := func(proto byte, src netip.Addr, sport uint16) []byte {
		return ipv6Src(ipv6(proto, netip.MustParseAddr("fd79::1"), ports(sport, 80)), src)
	}
	nd := func(typ byte, target netip.Addr) []byte {
		return append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, target.AsSlice()...)
	}
	allNodes := netip.MustParseAddr("ff02::1")
	for _, c := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"tcp to listening port", frame(0x0800, ipv4(5, 6, 0, me, ports(1234, 8080))), true},
		{"tcp to other listening port", frame(0x0800, ipv4(5, 6, 0, me, ports(1234, 443))), true},
		{"tcp to ephemeral block start", frame(0x0800, ipv4(5, 6, 0, me, ports(80, 40000))), true},
		{"tcp to ephemeral block end", frame(0x0800, ipv4(5, 6, 0, me, ports(80, 40003))), true},
		{"tcp past the block", frame(0x0800, ipv4(5, 6, 0, me, ports(80, 40004))), false},
		{"tcp below the block", frame(0x0800, ipv4(5, 6, 0, me, ports(80, 39999))), false},
		{"tcp to the kernel's ssh", frame(0x0800, ipv4(5, 6, 0, me, ports(1234, 22))), false},
		{"tcp from our port to the kernel's", frame(0x0800, ipv4(5, 6, 0, me, ports(8080, 22))), false},
		{"tcp to our port on the interface's other address", frame(0x0800, ipv4(5, 6, 0, second, ports(1234, 8080))), false},
		{"udp to our port on another host", frame(0x0800, ipv4(5, 17, 0, other, ports(9, 53))), false},
		{"tcp with IP options", frame(0x0800, ipv4(8, 6, 0, me, ports(1234, 8080))), true},
		{"tcp with IP options, kernel's port", frame(0x0800, ipv4(8, 6, 0, me, ports(8080, 22))), false},
		{"udp to our port", frame(0x0800, ipv4(5, 17, 0, me, ports(9, 53))), true},
		{"udp to a tcp-only port", frame(0x0800, ipv4(5, 17, 0, me, ports(9, 8080))), false},
		{"tcp to a udp-only port", frame(0x0800, ipv4(5, 6, 0, me, ports(9, 53))), false},
		{"first fragment to our port", frame(0x0800, ipv4(5, 17, 0x2000, me, ports(9, 53))), true},
		{"later fragment to us", frame(0x0800, ipv4(5, 17, 0x0010, me, ports(9, 22))), true},
		{"later fragment to the other address", frame(0x0800, ipv4(5, 17, 0x0010, second, ports(9, 22))), false},
		{"later fragment to another host", frame(0x0800, ipv4(5, 17, 0x0010, other, ports(9, 22))), false},
		{"icmp echo reply", frame(0x0800, ipv4(5, 1, 0, me, []byte{0, 0, 0, 0})), true},
		{"icmp echo reply to the other address", frame(0x0800, ipv4(5, 1, 0, second, []byte{0, 0, 0, 0})), false},
		{"icmp echo request", frame(0x0800, ipv4(5, 1, 0, me, []byte{8, 0, 0, 0})), false},
		{"icmp unreachable about our tcp", frame(0x0800, ipv4(5, 1, 0, me, icmpQuoting(3, sent4(6, 8080)))), true},
		{"icmp unreachable about our udp", frame(0x0800, ipv4(5, 1, 0, me, icmpQuoting(3, sent4(17, 40001)))), true},
		{"icmp unreachable about our echo", frame(0x0800, ipv4(5, 1, 0, me, icmpQuoting(3, sent4(1, 0)))), true},
		{"icmp unreachable quoting IP options", frame(0x0800, ipv4(5, 1, 0, me, icmpQuoting(3, sent4opts))), true},
		{"icmp time exceeded with IP options", frame(0x0800, ipv4(6, 1, 0, me, icmpQuoting(11, sent4(6, 443)))), true},
		{"icmp unreachable about the kernel's tcp", frame(0x0800, ipv4(5, 1, 0, me, icmpQuoting(3, sent4(6, 22)))), false},
		{"icmp unreachable about a udp port held for tcp", frame(0x0800, ipv4(5, 1, 0, me, icmpQuoting(3, sent4(17, 8080)))), false},
		{"icmp unreachable about the other address", frame(0x0800, ipv4(5, 1, 0, me, icmpQuoting(3, ipv4Src(ipv4(5, 6, 0, other, ports(8080, 80)), second)))), false},
		{"icmp unreachable quoting a header of length 0", frame(0x0800, ipv4(5, 1, 0, me, icmpQuoting(3, append([]byte{0x40}, sent4(6, 8080)[1:]...)))), false},
		{"igmp", frame(0x0800, ipv4(5, 2, 0, me, []byte{0x11, 0, 0, 0})), false},
		{"arp for us", frame(0x0806, arp(me)), true},
		{"arp for the other address", frame(0x0806, arp(second)), false},
		{"arp for another host", frame(0x0806, arp(other)), false},
		{"ipv6 tcp to our port", frame(0x86dd, ipv6(6, me6, ports(1, 8080))), true},
		{"ipv6 tcp to our port on the other address", frame(0x86dd, ipv6(6, second6, ports(1, 8080))), false},
		{"ipv6 tcp to the kernel's", frame(0x86dd, ipv6(6, me6, ports(1, 22))), false},
		{"ipv6 udp to our port", frame(0x86dd, ipv6(17, me6, ports(1, 40002))), true},
		{"ipv6 echo reply", frame(0x86dd, ipv6(58, me6, []byte{129, 0, 0, 0})), true},
		{"ipv6 echo reply to the other address", frame(0x86dd, ipv6(58, second6, []byte{129, 0, 0, 0})), false},
		{"ipv6 echo request", frame(0x86dd, ipv6(58, me6, []byte{128, 0, 0, 0})), false},
		{"ipv6 neighbour solicitation for us", frame(0x86dd, ipv6(58, netip.MustParseAddr("ff02::1:ff00:2"), nd(135, me6))), true},
		{"ipv6 neighbour solicitation for the other address", frame(0x86dd, ipv6(58, netip.MustParseAddr("ff02::1:ff00:3"), nd(135, second6))), false},
		{"ipv6 neighbour advertisement to us", frame(0x86dd, ipv6(58, me6, nd(136, netip.MustParseAddr("fd79::1")))), true},
		{"ipv6 neighbour advertisement to all nodes", frame(0x86dd, ipv6(58, allNodes, nd(136, netip.MustParseAddr("fd79::1")))), true},
		{"ipv6 neighbour advertisement to the other address", frame(0x86dd, ipv6(58, second6, nd(136, netip.MustParseAddr("fd79::1")))), false},
		{"ipv6 router advertisement", frame(0x86dd, ipv6(58, allNodes, []byte{134, 0, 0, 0})), false},
		{"ipv6 packet too big about our tcp", frame(0x86dd, ipv6(58, me6, icmpQuoting(2, sent6(6, me6, 8080)))), true},
		{"ipv6 unreachable about our echo", frame(0x86dd, ipv6(58, me6, icmpQuoting(1, sent6(58, me6, 0)))), true},
		{"ipv6 unreachable about the kernel's udp", frame(0x86dd, ipv6(58, me6, icmpQuoting(1, sent6(17, me6, 22)))), false},
		{"ipv6 unreachable about the other address", frame(0x86dd, ipv6(58, me6, icmpQuoting(1, sent6(6, second6, 8080)))), false},
		{"ipv6 unreachable to the other address", frame(0x86dd, ipv6(58, second6, icmpQuoting(1, sent6(6, me6, 8080)))), false},
		{"ipv6 hop-by-hop first", frame(0x86dd, ipv6(0, me6, ports(1, 8080))), false},
		{"ipv6 fragment", frame(0x86dd, ipv6(44, me6, ports(1, 8080))), false},
		{"lldp", frame(0x88cc, make([]byte, 40)), false},
		{"runt", []byte{1, 2, 3}, false},
		{"truncated ipv4", frame(0x0800, []byte{0x45, 0}), false},
	} {
		n, err := vm.Run(c.frame)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := n > 0; got != c.want {
			t.Errorf("%s: admitted %v, want %v", c.name, got, c.want)
		}
	}
}

// TestBuildFilterManyPorts: thousands of scattered ports still assemble
// (the port lists use no long conditional jumps), and too many is an error.
func TestBuildFilterManyPorts(t *testing.T) {
	var ps []uint16
	for p := uint16(1000); len(ps) < 1900; p += 2 {
		ps = append(ps, p)
	}
	me := netip.MustParseAddr("10.79.0.2")
	prog, err := BuildFilter(FilterSpec{IPv4: []netip.Addr{me}, TCP: ps})
	if err != nil {
		t.Fatalf("1900 ports: %v", err)
	}
	vm, _ := bpf.NewVM(mustDisassemble(t, prog))
	if n, _ := vm.Run(frame(0x0800, ipv4(5, 6, 0, me.As4(), ports(1, ps[len(ps)-1])))); n == 0 {
		t.Error("the last of 1900 ports is not admitted")
	}
	for p := uint16(10000); len(ps) < 2100; p += 2 {
		ps = append(ps, p)
	}
	if _, err := BuildFilter(FilterSpec{TCP: ps}); err == nil {
		t.Error("2100 scattered ports: no error, want one about the size limit")
	}
}

func mustDisassemble(t *testing.T, prog []bpf.RawInstruction) []bpf.Instruction {
	insns, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatal("the program does not disassemble")
	}
	return insns
}
