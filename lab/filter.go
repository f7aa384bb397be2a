package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/observe"
)

// A node's filter rules are written as iptables takes them, a subset:
//
//	[-t filter|nat] -A CHAIN [-p tcp|udp|icmp|icmpv6] [[!] -s CIDR] [[!] -d CIDR]
//	    [[!] -i IFACE] [[!] -o IFACE] [--sport PORT[:PORT]] [--dport PORT[:PORT]] -j TARGET
//
// The filter table (the default) has the chains INPUT, FORWARD and OUTPUT
// and the targets ACCEPT, DROP and REJECT (an ICMP error, or a reset for
// TCP); the nat table has POSTROUTING with MASQUERADE. A rule without an
// address or an ICMP protocol applies to IPv4 and IPv6 alike. They are
// installed in netstack's own iptables, in file order, after which each
// chain accepts (its policy, -P CHAIN ACCEPT); each rule and each policy
// counts the packets and bytes it took, and while a trace runs on the node
// tells it of each packet (a rule record).

// Rule is one parsed filter rule.
type Rule struct {
	Text           string
	Table, Chain   string
	Proto          string // "", tcp, udp, icmp, icmpv6
	Src, Dst       netip.Prefix
	SrcNot, DstNot bool
	In, Out        string
	InNot, OutNot  bool
	SPort, DPort   [2]uint16 // inclusive range; {0, 0}: any
	Target         string
}

var chainsOf = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"nat":    {"POSTROUTING"},
}

var targetsOf = map[string][]string{
	"filter": {"ACCEPT", "DROP", "REJECT"},
	"nat":    {"MASQUERADE"},
}

var ruleFlags = map[string]bool{
	"-t": true, "--table": true, "-A": true, "--append": true, "-p": true, "--protocol": true,
	"-s": true, "--source": true, "-d": true, "--destination": true, "-i": true, "--in-interface": true,
	"-o": true, "--out-interface": true, "--sport": true, "--source-port": true,
	"--dport": true, "--destination-port": true, "-j": true, "--jump": true,
}

// ParseRule reads one rule; an error names the word at fault.
func ParseRule(s string) (Rule, error) {
	r := Rule{Text: s, Table: "filter"}
	words := strings.Fields(s)
	not := false
	value := func(i int, flag string) (string, error) {
		if i+1 >= len(words) {
			return "", fmt.Errorf("%s needs a value", flag)
		}
		return words[i+1], nil
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "!" {
			if not {
				return r, fmt.Errorf("! twice")
			}
			not = true
			continue
		}
		negatable := map[string]bool{"-s": true, "-d": true, "-i": true, "-o": true}
		if not && !negatable[w] {
			return r, fmt.Errorf("! goes before -s, -d, -i or -o, not %s", w)
		}
		if !ruleFlags[w] {
			return r, fmt.Errorf("unknown word %q (rules take -t, -A, -p, -s, -d, -i, -o, --sport, --dport, -j)", w)
		}
		v, err := value(i, w)
		if err != nil {
			return r, err
		}
		switch w {
		case "-t", "--table":
			if _, ok := chainsOf[v]; !ok {
				return r, fmt.Errorf("table %q: use filter or nat", v)
			}
			r.Table = v
		case "-A", "--append":
			r.Chain = v
		case "-p", "--protocol":
			switch v = strings.ToLower(v); v {
			case "tcp", "udp", "icmp", "icmpv6", "ipv6-icmp":
				if v == "ipv6-icmp" {
					v = "icmpv6"
				}
				r.Proto = v
			default:
				return r, fmt.Errorf("protocol %q: use tcp, udp, icmp or icmpv6", v)
			}
		case "-s", "--source", "-d", "--destination":
			p, err := parsePrefixOrAddr(v)
			if err != nil {
				return r, fmt.Errorf("%s %q: %v", w, v, err)
			}
			if w == "-s" || w == "--source" {
				r.Src, r.SrcNot = p, not
			} else {
				r.Dst, r.DstNot = p, not
			}
		case "-i", "--in-interface":
			r.In, r.InNot = v, not
		case "-o", "--out-interface":
			r.Out, r.OutNot = v, not
		case "--sport", "--source-port", "--dport", "--destination-port":
			pr, err := parsePortRange(v)
			if err != nil {
				return r, fmt.Errorf("%s %q: %v", w, v, err)
			}
			if w == "--sport" || w == "--source-port" {
				r.SPort = pr
			} else {
				r.DPort = pr
			}
		case "-j", "--jump":
			r.Target = strings.ToUpper(v)
		}
		not = false
		i++
	}
	if not {
		return r, fmt.Errorf("! at the end")
	}
	switch {
	case r.Chain == "":
		return r, fmt.Errorf("missing -A CHAIN (%s)", strings.Join(chainsOf[r.Table], ", "))
	case !contains(chainsOf[r.Table], r.Chain):
		return r, fmt.Errorf("chain %q is not one of the %s table's (%s)", r.Chain, r.Table, strings.Join(chainsOf[r.Table], ", "))
	case r.Target == "":
		return r, fmt.Errorf("missing -j TARGET (%s)", strings.Join(targetsOf[r.Table], ", "))
	case !contains(targetsOf[r.Table], r.Target):
		return r, fmt.Errorf("target %q is not one of the %s table's (%s)", r.Target, r.Table, strings.Join(targetsOf[r.Table], ", "))
	case r.In != "" && (r.Chain == "OUTPUT" || r.Chain == "POSTROUTING"):
		return r, fmt.Errorf("-i cannot be used in %s (packets there have no input interface)", r.Chain)
	case r.Out != "" && r.Chain == "INPUT":
		return r, fmt.Errorf("-o cannot be used in INPUT (packets there have no output interface)")
	case (r.SPort != [2]uint16{} || r.DPort != [2]uint16{}) && r.Proto != "tcp" && r.Proto != "udp":
		return r, fmt.Errorf("ports need -p tcp or -p udp")
	}
	if r.Src.IsValid() && r.Dst.IsValid() && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		return r, fmt.Errorf("-s and -d are of different families")
	}
	if fam, ok := r.family(); ok && (r.Proto == "icmp" && !fam || r.Proto == "icmpv6" && fam) {
		return r, fmt.Errorf("-p %s does not go with addresses of the other family", r.Proto)
	}
	return r, nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("not an address or prefix")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePortRange(s string) ([2]uint16, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil || a == 0 || b < a {
		return [2]uint16{}, fmt.Errorf("not a port or a range LOW:HIGH")
	}
	return [2]uint16{uint16(a), uint16(b)}, nil
}

// family returns true for IPv4, false for IPv6, and whether the rule is
// of one family only.
func (r Rule) family() (v4 bool, ok bool) {
	switch {
	case r.Src.IsValid():
		return r.Src.Addr().Is4(), true
	case r.Dst.IsValid():
		return r.Dst.Addr().Is4(), true
	case r.Proto == "icmp":
		return true, true
	case r.Proto == "icmpv6":
		return false, true
	}
	return false, false
}

// RuleCounter counts what one rule took.
type RuleCounter struct {
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Filter is a node's installed rules and their counters.
type Filter struct {
	rules    []Rule
	counters []*counter
	policies []*policy // of the chains of the tables in use
}

// policy is a chain's policy: what its packets that no rule took meet.
type policy struct {
	table, chain, text string
	c                  counter
}

type counter struct{ packets, bytes atomic.Uint64 }

// Counters returns each rule's counts, in the rules' order.
func (f *Filter) Counters() []RuleCounter {
	if f == nil {
		return []RuleCounter{}
	}
	out := make([]RuleCounter, len(f.rules))
	for i, r := range f.rules {
		out[i] = RuleCounter{Rule: r.Text, Packets: f.counters[i].packets.Load(), Bytes: f.counters[i].bytes.Load()}
	}
	return out
}

// PolicyCounters returns the counts of each chain's policy, in the order
// of the tables and chains the rules use.
func (f *Filter) PolicyCounters() []RuleCounter {
	out := []RuleCounter{}
	if f == nil {
		return out
	}
	for _, p := range f.policies {
		out = append(out, RuleCounter{Rule: p.text, Packets: p.c.packets.Load(), Bytes: p.c.bytes.Load()})
	}
	return out
}

// InstallFilter puts rules into ns's iptables, replacing the filter and
// nat tables of both families (when there are rules for them). feed, if
// not nil, is told of each packet a rule or a policy takes while someone
// subscribes to it.
func InstallFilter(ns *stack.Stack, rules []Rule, feed *observe.RuleFeed) (*Filter, error) {
	f := &Filter{rules: rules}
	for range rules {
		f.counters = append(f.counters, &counter{})
	}
	if len(rules) == 0 {
		return f, nil
	}
	// The rule's position in its chain, as iptables -L --line-numbers
	// would show it.
	index := make([]int, len(rules))
	inChain := map[[2]string]int{}
	for i, r := range rules {
		k := [2]string{r.Table, r.Chain}
		inChain[k]++
		index[i] = inChain[k]
	}
	policies := map[[2]string]*policy{}
	for _, table := range []string{"filter", "nat"} {
		if !slices.ContainsFunc(rules, func(r Rule) bool { return r.Table == table }) {
			continue
		}
		for _, chain := range chainsOf[table] {
			p := &policy{table: table, chain: chain, text: "-P " + chain + " ACCEPT"}
			if table != "filter" {
				p.text = "-t " + table + " " + p.text
			}
			f.policies = append(f.policies, p)
			policies[[2]string{table, chain}] = p
		}
	}
	for _, v6 := range []bool{false, true} {
		proto := header.IPv4ProtocolNumber
		if v6 {
			proto = header.IPv6ProtocolNumber
		}
		for _, table := range []struct {
			name  string
			id    stack.TableID
			hooks []stack.Hook
		}{
			{"filter", stack.FilterID, []stack.Hook{stack.Input, stack.Forward, stack.Output}},
			{"nat", stack.NATID, []stack.Hook{stack.Prerouting, stack.Input, stack.Output, stack.Postrouting}},
		} {
			used := false
			for _, r := range rules {
				used = used || r.Table == table.name
			}
			if !used {
				continue
			}
			t := stack.Table{}
			for h := range t.BuiltinChains {
				t.BuiltinChains[h] = stack.HookUnset
				t.Underflows[h] = stack.HookUnset
			}
			for _, hook := range table.hooks {
				t.BuiltinChains[hook] = len(t.Rules)
				for i, r := range rules {
					if r.Table != table.name || chainHook[r.Chain] != hook {
						continue
					}
					if fam, ok := r.family(); ok && fam == v6 {
						continue // fam is true for IPv4
					}
					rule, err := r.netstackRule(ns, proto, &verdictTarget{c: f.counters[i], feed: feed,
						table: r.Table, chain: r.Chain, rule: r.Text, index: index[i], verdict: r.Target})
					if err != nil {
						return nil, err
					}
					t.Rules = append(t.Rules, rule)
				}
				t.Underflows[hook] = len(t.Rules)
				var target stack.Target = &stack.AcceptTarget{NetworkProtocol: proto}
				if p := policies[[2]string{table.name, hookChain[hook]}]; p != nil {
					target = &countingTarget{Target: target, verdictTarget: &verdictTarget{c: &p.c, feed: feed,
						table: p.table, chain: p.chain, rule: p.text, verdict: "ACCEPT"}}
				}
				t.Rules = append(t.Rules, stack.Rule{Filter: emptyFilter(v6), Target: target})
			}
			t.Rules = append(t.Rules, stack.Rule{Filter: emptyFilter(v6), Target: &stack.ErrorTarget{NetworkProtocol: proto}})
			ns.IPTables().ForceReplaceTable(table.id, t, v6)
		}
	}
	return f, nil
}

var chainHook = map[string]stack.Hook{
	"PREROUTING": stack.Prerouting, "INPUT": stack.Input, "FORWARD": stack.Forward,
	"OUTPUT": stack.Output, "POSTROUTING": stack.Postrouting,
}

var hookChain = map[stack.Hook]string{
	stack.Prerouting: "PREROUTING", stack.Input: "INPUT", stack.Forward: "FORWARD",
	stack.Output: "OUTPUT", stack.Postrouting: "POSTROUTING",
}

func emptyFilter(v6 bool) stack.IPHeaderFilter {
	if v6 {
		return stack.EmptyFilter6()
	}
	return stack.EmptyFilter4()
}

func (r Rule) netstackRule(ns *stack.Stack, proto tcpip.NetworkProtocolNumber, v *verdictTarget) (stack.Rule, error) {
	v6 := proto == header.IPv6ProtocolNumber
	fl := emptyFilter(v6)
	switch r.Proto {
	case "tcp":
		fl.Protocol, fl.CheckProtocol = header.TCPProtocolNumber, true
	case "udp":
		fl.Protocol, fl.CheckProtocol = header.UDPProtocolNumber, true
	case "icmp":
		fl.Protocol, fl.CheckProtocol = header.ICMPv4ProtocolNumber, true
	case "icmpv6":
		fl.Protocol, fl.CheckProtocol = header.ICMPv6ProtocolNumber, true
	}
	if r.Src.IsValid() {
		fl.Src, fl.SrcMask, fl.SrcInvert = netstack.Address(r.Src.Addr()), mask(r.Src), r.SrcNot
	}
	if r.Dst.IsValid() {
		fl.Dst, fl.DstMask, fl.DstInvert = netstack.Address(r.Dst.Addr()), mask(r.Dst), r.DstNot
	}
	fl.InputInterface, fl.InputInterfaceInvert = r.In, r.InNot
	fl.OutputInterface, fl.OutputInterfaceInvert = r.Out, r.OutNot
	var target stack.Target
	switch r.Target {
	case "ACCEPT":
		target = &stack.AcceptTarget{NetworkProtocol: proto}
	case "DROP":
		target = &stack.DropTarget{NetworkProtocol: proto}
	case "MASQUERADE":
		target = &stack.MasqueradeTarget{NetworkProtocol: proto}
	case "REJECT":
		handler := ns.NetworkProtocolInstance(proto)
		if v6 {
			h, ok := handler.(stack.RejectIPv6WithHandler)
			if !ok {
				return stack.Rule{}, fmt.Errorf("%q: the IPv6 protocol cannot reject", r.Text)
			}
			with := stack.RejectIPv6WithICMPPortUnreachable
			if r.Proto == "tcp" {
				with = stack.RejectIPv6WithTCPReset
			}
			target = &stack.RejectIPv6Target{Handler: h, RejectWith: with}
		} else {
			h, ok := handler.(stack.RejectIPv4WithHandler)
			if !ok {
				return stack.Rule{}, fmt.Errorf("%q: the IPv4 protocol cannot reject", r.Text)
			}
			with := stack.RejectIPv4WithICMPPortUnreachable
			if r.Proto == "tcp" {
				with = stack.RejectIPv4WithTCPReset
			}
			target = &stack.RejectIPv4Target{Handler: h, RejectWith: with}
		}
	}
	rule := stack.Rule{Filter: fl, Target: &countingTarget{Target: target, verdictTarget: v}}
	if r.SPort != [2]uint16{} || r.DPort != [2]uint16{} {
		rule.Matchers = []stack.Matcher{&portMatcher{sport: r.SPort, dport: r.DPort}}
	}
	return rule, nil
}

// mask is the netmask of p as an address of its family.
func mask(p netip.Prefix) tcpip.Address {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return tcpip.AddrFromSlice(b)
}

// countingTarget counts the packets a rule (or a policy) took and tells a
// trace of them, then does what the rule says.
type countingTarget struct {
	stack.Target
	*verdictTarget
}

// verdictTarget is what a rule's target knows of the rule, for its
// counter and the rule records.
type verdictTarget struct {
	c                  *counter
	feed               *observe.RuleFeed
	table, chain, rule string
	index              int // in the chain, from 1; 0 for the policy
	verdict            string
}

func (t *countingTarget) Action(pkt *stack.PacketBuffer, hook stack.Hook, r *stack.Route, ep stack.AddressableEndpoint) (stack.RuleVerdict, int) {
	t.c.packets.Add(1)
	t.c.bytes.Add(uint64(pkt.Size()))
	// Before the action: a REJECT's reset or ICMP error is sent from
	// within it, and its own record comes after this one.
	if t.feed.Active() {
		t.feed.Publish(t.event(pkt))
	}
	return t.Target.Action(pkt, hook, r, ep)
}

// event describes the packet pkt for a rule record.
func (t *verdictTarget) event(pkt *stack.PacketBuffer) observe.RuleEvent {
	ev := observe.RuleEvent{Time: time.Now(), Table: t.table, Chain: t.chain, Rule: t.rule, Index: t.index, Verdict: t.verdict}
	nh := pkt.NetworkHeader().Slice()
	var src, dst tcpip.Address
	var proto tcpip.TransportProtocolNumber
	ports := true
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(nh)
		if len(nh) < header.IPv4MinimumSize {
			return ev
		}
		src, dst, proto, ev.Len = ip.SourceAddress(), ip.DestinationAddress(), ip.TransportProtocol(), int(ip.TotalLength())
		ports = ip.FragmentOffset() == 0
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(nh)
		if len(nh) < header.IPv6MinimumSize {
			return ev
		}
		src, dst, ev.Len = ip.SourceAddress(), ip.DestinationAddress(), header.IPv6MinimumSize+int(ip.PayloadLength())
		if proto = pkt.TransportProtocolNumber; proto == 0 {
			proto = ip.TransportProtocol()
		}
	default:
		return ev
	}
	var sport, dport uint16
	switch proto {
	case header.TCPProtocolNumber:
		ev.Proto = "tcp"
	case header.UDPProtocolNumber:
		ev.Proto = "udp"
	case header.ICMPv4ProtocolNumber:
		ev.Proto, ports = "icmp", false
	case header.ICMPv6ProtocolNumber:
		ev.Proto, ports = "icmpv6", false
	default:
		ev.Proto, ports = strconv.Itoa(int(proto)), false
	}
	if th := pkt.TransportHeader().Slice(); ports && len(th) >= 4 {
		// TCP and UDP both begin with the source and destination ports.
		sport, dport = uint16(th[0])<<8|uint16(th[1]), uint16(th[2])<<8|uint16(th[3])
	}
	ev.Src = netip.AddrPortFrom(netstack.NetipAddr(src), sport)
	ev.Dst = netip.AddrPortFrom(netstack.NetipAddr(dst), dport)
	return ev
}

// portMatcher matches the TCP or UDP ports of a packet whose protocol the
// rule's header filter has checked. Fragments after the first carry no
// ports and never match.
type portMatcher struct{ sport, dport [2]uint16 }

func (m *portMatcher) Match(_ stack.Hook, pkt *stack.PacketBuffer, _, _ string) (bool, bool) {
	if pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber {
		if header.IPv4(pkt.NetworkHeader().Slice()).FragmentOffset() != 0 {
			return false, false
		}
	}
	th := pkt.TransportHeader().Slice()
	if len(th) < 4 {
		return false, false
	}
	// TCP and UDP both begin with the source and destination ports.
	sport, dport := uint16(th[0])<<8|uint16(th[1]), uint16(th[2])<<8|uint16(th[3])
	in := func(p uint16, r [2]uint16) bool { return r == [2]uint16{} || p >= r[0] && p <= r[1] }
	return in(sport, m.sport) && in(dport, m.dport), false
}
