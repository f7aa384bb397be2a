package link

import (
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FilterSpec is what a stack that shares an interface with the host kernel
// takes from it: segments and datagrams to its own TCP and UDP ports, and
// the ARP, ICMP and ICMPv6 it needs to work at all. Everything else on the
// wire is the kernel's and never reaches the stack, so the stack cannot
// answer (or reset) the kernel's connections.
type FilterSpec struct {
	// IPv4 are the stack's IPv4 addresses: ARP for them and IPv4 fragments
	// to them are admitted.
	IPv4 []netip.Addr
	// TCP and UDP are the stack's ports.
	TCP, UDP []uint16
}

const (
	// Offsets in an Ethernet frame (no VLAN tag: the kernel strips the tag
	// into metadata before packet sockets see the frame on a tagged
	// interface, and an untagged interface carries none).
	offEtherType  = 12
	offNet        = 14
	offARPTarget  = offNet + 24 // target protocol address of ARP for IPv4
	offIPv4Frag   = offNet + 6
	offIPv4Proto  = offNet + 9
	offIPv4Dst    = offNet + 16
	offIPv6Next   = offNet + 6
	offIPv6L4     = offNet + 40
	acceptAll     = 0xffffffff // keep the whole frame
	maxFilterSize = 4096       // BPF_MAXINSNS
)

// BuildFilter compiles spec into a classic BPF program for SO_ATTACH_FILTER.
//
// Admitted:
//   - ARP whose target address is one of spec.IPv4: requests for our
//     address and replies to our requests (the stack shares the host's MAC
//     and must learn its neighbours itself);
//   - IPv4 (any header length) and IPv6 TCP/UDP whose destination port is
//     in spec.TCP/spec.UDP;
//   - IPv4 non-first fragments to our addresses (they carry no ports; the
//     stack's reassembly drops those not completing a datagram of ours);
//   - ICMP echo replies and ICMP errors (destination unreachable, time
//     exceeded, parameter problem), ICMPv6 echo replies, errors (types 1-4)
//     and neighbour solicitations/advertisements. Echo replies are admitted
//     whatever their identifier rather than only for the stack's echo
//     identifiers: the identifiers come and go with every ping socket, and a
//     reply the stack does not expect is simply dropped by it, while the
//     kernel drops the stack's in the same way. Echo requests are not
//     admitted, so only the kernel answers pings to the shared address.
//
// IPv6 packets with extension headers before TCP/UDP are not admitted.
func BuildFilter(spec FilterSpec) ([]bpf.RawInstruction, error) {
	var a asm
	a.op(bpf.LoadAbsolute{Off: offEtherType, Size: 2})
	a.jeq(uint32(header.IPv4ProtocolNumber), "ipv4", "")
	a.jeq(uint32(header.IPv6ProtocolNumber), "ipv6", "")
	a.jeq(uint32(header.ARPProtocolNumber), "arp", "drop")

	a.label("arp")
	a.op(bpf.LoadAbsolute{Off: offARPTarget, Size: 4})
	for _, ip := range spec.IPv4 {
		a.jeq(be32(ip), "accept", "")
	}
	a.ja("drop")

	a.label("ipv4")
	a.op(bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2})
	a.jset(0x1fff, "ipv4frag", "") // fragment offset not zero: no L4 header
	a.op(bpf.LoadMemShift{Off: offNet})
	a.op(bpf.LoadAbsolute{Off: offIPv4Proto, Size: 1})
	a.jeq(uint32(header.TCPProtocolNumber), "ipv4tcp", "")
	a.jeq(uint32(header.UDPProtocolNumber), "ipv4udp", "")
	a.jeq(uint32(header.ICMPv4ProtocolNumber), "ipv4icmp", "drop")
	a.label("ipv4tcp")
	a.op(bpf.LoadIndirect{Off: offNet + 2, Size: 2})
	a.ja("tcp")
	a.label("ipv4udp")
	a.op(bpf.LoadIndirect{Off: offNet + 2, Size: 2})
	a.ja("udp")
	a.label("ipv4icmp")
	a.op(bpf.LoadIndirect{Off: offNet, Size: 1})
	for _, typ := range []uint32{0, 3, 11, 12} { // echo reply, unreachable, time exceeded, parameter problem
		a.jeq(typ, "accept", "")
	}
	a.ja("drop")
	a.label("ipv4frag")
	a.op(bpf.LoadAbsolute{Off: offIPv4Dst, Size: 4})
	for _, ip := range spec.IPv4 {
		a.jeq(be32(ip), "accept", "")
	}
	a.ja("drop")

	a.label("ipv6")
	a.op(bpf.LoadAbsolute{Off: offIPv6Next, Size: 1})
	a.jeq(uint32(header.TCPProtocolNumber), "ipv6tcp", "")
	a.jeq(uint32(header.UDPProtocolNumber), "ipv6udp", "")
	a.jeq(uint32(header.ICMPv6ProtocolNumber), "ipv6icmp", "drop")
	a.label("ipv6tcp")
	a.op(bpf.LoadAbsolute{Off: offIPv6L4 + 2, Size: 2})
	a.ja("tcp")
	a.label("ipv6udp")
	a.op(bpf.LoadAbsolute{Off: offIPv6L4 + 2, Size: 2})
	a.ja("udp")
	a.label("ipv6icmp")
	a.op(bpf.LoadAbsolute{Off: offIPv6L4, Size: 1})
	// Errors (unreachable, too big, time exceeded, parameter problem), echo
	// reply, neighbour solicitation and advertisement.
	for _, typ := range []uint32{1, 2, 3, 4, 129, 135, 136} {
		a.jeq(typ, "accept", "")
	}
	a.ja("drop")

	// The verdicts sit before the port lists, which may be long, so that
	// every conditional jump above stays within its 255-instruction reach.
	a.label("accept")
	a.op(bpf.RetConstant{Val: acceptAll})
	a.label("drop")
	a.op(bpf.RetConstant{Val: 0})

	// Port lists: the dport is in A. Each range ends in its own return so
	// the list can be as long as BPF allows.
	for _, l := range []struct {
		name  string
		ports []uint16
	}{{"tcp", spec.TCP}, {"udp", spec.UDP}} {
		a.label(l.name)
		for _, r := range portRanges(l.ports) {
			if r[0] == r[1] {
				a.jeqSkip(uint32(r[0]), 0, 1)
			} else {
				a.op(bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(r[0]), SkipTrue: 2})
				a.op(bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(r[1]), SkipTrue: 1})
			}
			a.op(bpf.RetConstant{Val: acceptAll})
		}
		a.op(bpf.RetConstant{Val: 0})
	}
	return a.assemble()
}

func be32(ip netip.Addr) uint32 {
	b := ip.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// portRanges sorts ports and merges runs of consecutive ports, so that a
// reserved block of ephemeral ports costs three instructions.
func portRanges(ports []uint16) [][2]uint16 {
	ps := slices.Clone(ports)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	var out [][2]uint16
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1][1]+1 == p && out[n-1][1] != 0xffff {
			out[n-1][1] = p
			continue
		}
		out = append(out, [2]uint16{p, p})
	}
	return out
}

// asm is a small assembler for classic BPF with named jump targets.
type asm struct {
	ins    []bpf.Instruction
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at   int
	t, f string // target labels; "" is the next instruction
}

func (a *asm) op(i bpf.Instruction) { a.ins = append(a.ins, i) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *asm) jeq(val uint32, t, f string) {
	a.fixups = append(a.fixups, fixup{len(a.ins), t, f})
	a.op(bpf.JumpIf{Cond: bpf.JumpEqual, Val: val})
}

func (a *asm) jset(mask uint32, t, f string) {
	a.fixups = append(a.fixups, fixup{len(a.ins), t, f})
	a.op(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: mask})
}

// jeqSkip is a jump with fixed skips, for the port lists.
func (a *asm) jeqSkip(val uint32, skipTrue, skipFalse uint8) {
	a.op(bpf.JumpIf{Cond: bpf.JumpEqual, Val: val, SkipTrue: skipTrue, SkipFalse: skipFalse})
}

func (a *asm) ja(target string) {
	a.fixups = append(a.fixups, fixup{len(a.ins), target, ""})
	a.op(bpf.Jump{})
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	skip := func(at int, label string) (int, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := a.labels[label]
		if !ok || to <= at {
			return 0, fmt.Errorf("bpf: bad jump to %q", label)
		}
		return to - at - 1, nil
	}
	for _, fx := range a.fixups {
		st, err := skip(fx.at, fx.t)
		if err != nil {
			return nil, err
		}
		sf, err := skip(fx.at, fx.f)
		if err != nil {
			return nil, err
		}
		switch j := a.ins[fx.at].(type) {
		case bpf.Jump:
			j.Skip = uint32(st)
			a.ins[fx.at] = j
		case bpf.JumpIf:
			if st > 255 || sf > 255 {
				return nil, fmt.Errorf("bpf: jump to %q/%q out of reach", fx.t, fx.f)
			}
			j.SkipTrue, j.SkipFalse = uint8(st), uint8(sf)
			a.ins[fx.at] = j
		}
	}
	if len(a.ins) > maxFilterSize {
		return nil, fmt.Errorf("bpf: filter of %d instructions is over the kernel's limit of %d (too many ports)", len(a.ins), maxFilterSize)
	}
	return bpf.Assemble(a.ins)
}
