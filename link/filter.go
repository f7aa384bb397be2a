package link

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FilterSpec is a stack's grant on an interface it shares with the host
// kernel: its addresses and its TCP and UDP ports, held on each of those
// addresses. The stack takes from the wire only what is addressed to a
// granted (address, port) pair, and the ARP, ICMP and ICMPv6 it needs to
// work at all. Everything else is the kernel's, or another stack's on
// another address, and never reaches the stack, so the stack can neither
// read nor answer (or reset) it. ustack portd checks what its clients send
// against the same grant (package portd/server), so the two cannot
// disagree.
type FilterSpec struct {
	// IPv4 and IPv6 are the stack's addresses.
	IPv4, IPv6 []netip.Addr
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

// Offsets the filter reads beyond those above.
const (
	offIPv6Dst   = offNet + 24
	offICMPQuote = offNet + 8 // from the end of the IPv4 header (X)
	offIPv6Quote = offIPv6L4 + 8
	offNDPTarget = offIPv6L4 + 8
)

// BuildFilter compiles spec into a classic BPF program for SO_ATTACH_FILTER.
//
// Admitted, and only to the stack's own addresses:
//   - ARP whose target address is one of spec.IPv4: requests for our
//     address and replies to our requests (the stack shares the host's MAC
//     and must learn its neighbours itself);
//   - IPv4 (any header length) and IPv6 TCP/UDP whose destination is one
//     of the stack's addresses and whose destination port is one of its
//     ports: a stack holding 10.0.0.1:8080 does not see 10.0.0.2:8080;
//   - IPv4 non-first fragments to our addresses (they carry no ports; ustack
//     portd passes its clients only those of datagrams whose first fragment
//     it passed them, and a stack's reassembly drops the rest);
//   - ICMP and ICMPv6 echo replies, and errors (destination unreachable,
//     packet too big, time exceeded, parameter problem) that quote a
//     packet the stack sent: from one of its addresses and, for TCP and
//     UDP, from one of its ports. Echo replies are admitted whatever their
//     identifier rather than only for the stack's echo identifiers: the
//     identifiers come and go with every ping socket, and a reply the stack
//     does not expect is simply dropped by it, while the kernel drops the
//     stack's in the same way. Echo requests are not admitted, so only the
//     kernel answers pings to the shared address;
//   - ICMPv6 neighbour solicitations for one of our addresses, and
//     neighbour advertisements to one of our addresses or to a multicast
//     group (answers to the stack's own solicitations).
//
// IPv6 packets with extension headers (fragments, routing headers, hop-by-
// hop options) are not admitted.
func BuildFilter(spec FilterSpec) ([]bpf.RawInstruction, error) {
	var a asm
	a.op(bpf.LoadAbsolute{Off: offEtherType, Size: 2})
	a.jeq(uint32(header.IPv4ProtocolNumber), "ipv4", "")
	a.jeq(uint32(header.IPv6ProtocolNumber), "ipv6", "")
	a.jeq(uint32(header.ARPProtocolNumber), "arp", "drop")

	a.label("arp")
	a.op(bpf.LoadAbsolute{Off: offARPTarget, Size: 4})
	a.matchIPv4(spec.IPv4, "accept", "drop")

	a.label("ipv4")
	a.op(bpf.LoadAbsolute{Off: offIPv4Dst, Size: 4})
	a.matchIPv4(spec.IPv4, "", "drop")
	a.op(bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2})
	a.jset(0x1fff, "accept", "") // a later fragment to us: no L4 header
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
	a.jeq(0, "accept", "")                    // echo reply
	for _, typ := range []uint32{3, 11, 12} { // unreachable, time exceeded, parameter problem
		a.jeq(typ, "ipv4quote", "")
	}
	a.ja("drop")
	// The quoted packet starts 8 bytes into the ICMP message, at X+offICMPQuote.
	a.label("ipv4quote")
	a.op(bpf.LoadIndirect{Off: offICMPQuote + 12, Size: 4}) // its source
	a.matchIPv4(spec.IPv4, "", "drop")
	a.op(bpf.LoadIndirect{Off: offICMPQuote + 9, Size: 1})
	a.jeq(uint32(header.ICMPv4ProtocolNumber), "accept", "") // about our echo request
	a.jeq(uint32(header.TCPProtocolNumber), "ipv4quotetcp", "")
	a.jeq(uint32(header.UDPProtocolNumber), "ipv4quoteudp", "drop")
	for _, q := range []string{"tcp", "udp"} {
		// X += the quoted header's length; then its source port is at
		// X+offICMPQuote.
		a.label("ipv4quote" + q)
		a.op(bpf.LoadIndirect{Off: offICMPQuote, Size: 1})
		a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f})
		a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
		a.jump(bpf.JumpLessThan, 20, "drop", "") // no IPv4 header is that short
		a.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
		a.op(bpf.TAX{})
		a.op(bpf.LoadIndirect{Off: offICMPQuote, Size: 2})
		a.ja(q)
	}

	a.label("ipv6")
	a.op(bpf.LoadAbsolute{Off: offIPv6Next, Size: 1})
	a.jeq(uint32(header.ICMPv6ProtocolNumber), "ipv6icmp", "")
	a.matchIPv6(offIPv6Dst, spec.IPv6, "", "drop")
	a.op(bpf.LoadAbsolute{Off: offIPv6Next, Size: 1})
	a.jeq(uint32(header.TCPProtocolNumber), "ipv6tcp", "")
	a.jeq(uint32(header.UDPProtocolNumber), "ipv6udp", "drop")
	a.label("ipv6tcp")
	a.op(bpf.LoadAbsolute{Off: offIPv6L4 + 2, Size: 2})
	a.ja("tcp")
	a.label("ipv6udp")
	a.op(bpf.LoadAbsolute{Off: offIPv6L4 + 2, Size: 2})
	a.ja("udp")

	a.label("ipv6icmp")
	a.op(bpf.LoadAbsolute{Off: offIPv6L4, Size: 1})
	a.jeq(129, "ipv6ours", "") // echo reply
	a.jeq(135, "ipv6ns", "")
	a.jeq(136, "ipv6na", "")
	a.jeq(0, "drop", "")
	a.jump(bpf.JumpGreaterThan, 4, "drop", "")
	// An error: to us, quoting a packet from us.
	a.matchIPv6(offIPv6Dst, spec.IPv6, "", "drop")
	a.matchIPv6(offIPv6Quote+8, spec.IPv6, "", "drop")
	a.op(bpf.LoadAbsolute{Off: offIPv6Quote + 6, Size: 1})
	a.jeq(uint32(header.ICMPv6ProtocolNumber), "accept", "")
	a.jeq(uint32(header.TCPProtocolNumber), "ipv6quotetcp", "")
	a.jeq(uint32(header.UDPProtocolNumber), "ipv6quoteudp", "drop")
	a.label("ipv6quotetcp")
	a.op(bpf.LoadAbsolute{Off: offIPv6Quote + 40, Size: 2})
	a.ja("tcp")
	a.label("ipv6quoteudp")
	a.op(bpf.LoadAbsolute{Off: offIPv6Quote + 40, Size: 2})
	a.ja("udp")
	a.label("ipv6ns") // a solicitation for one of our addresses
	a.matchIPv6(offNDPTarget, spec.IPv6, "accept", "drop")
	a.label("ipv6na") // an advertisement to us or to a group
	a.op(bpf.LoadAbsolute{Off: offIPv6Dst, Size: 1})
	a.jeq(0xff, "accept", "")
	a.label("ipv6ours")
	a.matchIPv6(offIPv6Dst, spec.IPv6, "accept", "drop")

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

// asm is a small assembler for classic BPF with named jump targets. A
// conditional jump reaches only 255 instructions, so each one that names a
// label goes through an unconditional jump (which reaches anywhere) right
// after it: the program can grow with the addresses and ports it tests.
type asm struct {
	ins    []bpf.Instruction
	labels map[string]int
	fixups []fixup
	local  int // for labels of its own
}

type fixup struct {
	at     int
	target string
}

func (a *asm) op(i bpf.Instruction) { a.ins = append(a.ins, i) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

// newLabel is a name no other label has.
func (a *asm) newLabel() string {
	a.local++
	return fmt.Sprintf(".%d", a.local)
}

// jump tests A against val and goes to t if the test holds, to f if not;
// "" is the instruction after the jump.
func (a *asm) jump(cond bpf.JumpTest, val uint32, t, f string) {
	n := uint8(0)
	if t != "" {
		n++
	}
	if f != "" {
		n++
	}
	j := bpf.JumpIf{Cond: cond, Val: val, SkipTrue: n, SkipFalse: n}
	if t != "" {
		j.SkipTrue = 0
	}
	if f != "" {
		j.SkipFalse = n - 1
	}
	a.op(j)
	if t != "" {
		a.ja(t)
	}
	if f != "" {
		a.ja(f)
	}
}

func (a *asm) jeq(val uint32, t, f string)   { a.jump(bpf.JumpEqual, val, t, f) }
func (a *asm) jset(mask uint32, t, f string) { a.jump(bpf.JumpBitsSet, mask, t, f) }

// jeqSkip is a jump with fixed skips, for the port lists.
func (a *asm) jeqSkip(val uint32, skipTrue, skipFalse uint8) {
	a.op(bpf.JumpIf{Cond: bpf.JumpEqual, Val: val, SkipTrue: skipTrue, SkipFalse: skipFalse})
}

func (a *asm) ja(target string) {
	a.fixups = append(a.fixups, fixup{len(a.ins), target})
	a.op(bpf.Jump{})
}

// matchIPv4 goes to yes if A is one of addrs, to no if not ("" is what
// follows).
func (a *asm) matchIPv4(addrs []netip.Addr, yes, no string) {
	end := a.newLabel()
	if yes == "" {
		yes = end
	}
	for _, ip := range addrs {
		a.jeq(be32(ip), yes, "")
	}
	if no != "" {
		a.ja(no)
	}
	a.label(end)
}

// matchIPv6 goes to yes if the 16 bytes at off are one of addrs, to no if
// not ("" is what follows).
func (a *asm) matchIPv6(off uint32, addrs []netip.Addr, yes, no string) {
	end := a.newLabel()
	if yes == "" {
		yes = end
	}
	for _, ip := range addrs {
		b := ip.As16()
		next := a.newLabel()
		for w := range 4 {
			a.op(bpf.LoadAbsolute{Off: off + uint32(4*w), Size: 4})
			a.jeq(binary.BigEndian.Uint32(b[4*w:]), "", next)
		}
		a.ja(yes)
		a.label(next)
	}
	if no != "" {
		a.ja(no)
	}
	a.label(end)
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	for _, fx := range a.fixups {
		to, ok := a.labels[fx.target]
		if !ok || to <= fx.at {
			return nil, fmt.Errorf("bpf: bad jump to %q", fx.target)
		}
		a.ins[fx.at] = bpf.Jump{Skip: uint32(to - fx.at - 1)}
	}
	if len(a.ins) > maxFilterSize {
		return nil, fmt.Errorf("bpf: filter of %d instructions is over the kernel's limit of %d (too many ports)", len(a.ins), maxFilterSize)
	}
	return bpf.Assemble(a.ins)
}
