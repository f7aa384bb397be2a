package mutate

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Direction is the way a rule looks at frames.
type Direction int

const (
	// Egress is what the stack sends (the default of a rule).
	Egress Direction = iota
	// Ingress is what the stack receives.
	Ingress
)

func (d Direction) String() string {
	if d == Ingress {
		return "in"
	}
	return "out"
}

// Proto is the protocol a rule matches.
type Proto int

// Protocols a rule can name.
const (
	AnyProto Proto = iota
	TCP
	UDP
	ICMP // ICMP on IPv4, ICMPv6 on IPv6
)

var protoNames = map[string]Proto{"ip": AnyProto, "tcp": TCP, "udp": UDP, "icmp": ICMP}

func (p Proto) String() string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return "ip"
}

// Kind is what a rule does to the frames it matches.
type Kind int

// Actions. The last three are a misbehaving TCP receiver's (Savage et al.,
// CCR 1999) and apply only to the stack's own TCP ACKs.
const (
	Drop Kind = iota + 1
	Delay
	Duplicate
	Rewrite
	InjectRST
	AckDivision
	DupAck
	OptimisticAck
)

// Range is an inclusive range of port or sequence numbers; the zero Range
// matches everything.
type Range struct {
	Set    bool
	Lo, Hi uint32
}

func (r Range) match(v uint32) bool { return !r.Set || (v >= r.Lo && v <= r.Hi) }

func (r Range) String() string {
	if r.Lo == r.Hi {
		return strconv.FormatUint(uint64(r.Lo), 10)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Field is a header field a rewrite sets.
type Field struct {
	Name  string // ttl, tos, window, or a TCP flag: fin syn rst psh ack urg ece cwr
	Value uint32
}

// Rule is one parsed --mutate rule: what it matches and what it does.
type Rule struct {
	Dir        Direction
	Proto      Proto
	Src, Dst   netip.Prefix // invalid: any
	Sport      Range
	Dport      Range
	Port       Range // either port
	Flags      uint8 // TCP flags that must be set ...
	FlagsClear uint8 // ... and those that must be clear
	Seq        Range

	Kind     Kind
	Delay    time.Duration // Delay
	N        int           // Duplicate: copies; AckDivision: ACKs; DupAck: duplicates; OptimisticAck: segments ahead
	Rewrites []Field       // Rewrite
	// Prob is the probability that a matching frame is acted on, 0 to 1;
	// Parse sets 1 unless prob is given.
	Prob float64
}

// Limits of the numbers a rule takes.
const (
	MaxCopies = 64               // duplicate N, ack-division M, dupack K
	MaxAhead  = 1024             // optimistic-ack N
	MaxDelay  = 60 * time.Second // delay D
)

// tcpFlags are the letters of the TCP flags, in header bit order.
const tcpFlagLetters = "FSRPAUEC"

var flagNames = []string{"fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"}

// Usage is the rule language in one line, for errors.
const Usage = "a rule is [in|out] [tcp|udp|icmp] [src PREFIX] [dst PREFIX] [sport P[-P]] [dport P[-P]] [port P[-P]] [flags LETTERS[/MASK]] [seq A-B] ACTION [prob P%], ACTION one of drop, delay D, duplicate N, rewrite FIELD=VALUE..., inject rst, ack-division=M, dupack=K, optimistic-ack=N"

// Parse reads one rule, e.g. "drop tcp dport 80 flags S prob 50%" or
// "ack-division=4". Errors are one line naming the word and the fix.
func Parse(text string) (Rule, error) {
	words := strings.Fields(text)
	if len(words) == 0 {
		return Rule{}, fmt.Errorf("empty rule (%s)", Usage)
	}
	r := Rule{Prob: 1}
	for i := 0; i < len(words); i++ {
		w := strings.ToLower(words[i])
		key, val, hasVal := strings.Cut(w, "=")
		// next returns the value of key: after '=' or the next word.
		next := func(what string) (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(words) {
				return "", fmt.Errorf("%q needs %s after it", key, what)
			}
			i++
			return words[i], nil
		}
		var err error
		switch key {
		case "in", "out":
			if hasVal {
				return Rule{}, fmt.Errorf("%q: write in or out alone", w)
			}
			r.Dir = map[string]Direction{"in": Ingress, "out": Egress}[key]
		case "ip", "tcp", "udp", "icmp":
			if hasVal {
				return Rule{}, fmt.Errorf("%q: a protocol takes no value (write %s)", w, key)
			}
			r.Proto = protoNames[key]
		case "src", "dst":
			var v string
			if v, err = next("an address or prefix, e.g. 10.0.9.2 or fd09::/64"); err == nil {
				var p netip.Prefix
				if p, err = parsePrefix(key, v); err == nil {
					if key == "src" {
						r.Src = p
					} else {
						r.Dst = p
					}
				}
			}
		case "sport", "dport", "port":
			var v string
			if v, err = next("a port or range, e.g. 80 or 8000-8080"); err == nil {
				var rg Range
				if rg, err = parseRange(key, v, math.MaxUint16); err == nil {
					switch key {
					case "sport":
						r.Sport = rg
					case "dport":
						r.Dport = rg
					default:
						r.Port = rg
					}
				}
			}
		case "flags":
			var v string
			if v, err = next("TCP flag letters, e.g. S or SA or S/SA"); err == nil {
				r.Flags, r.FlagsClear, err = parseFlags(v)
			}
		case "seq":
			var v string
			if v, err = next("a sequence number or range, e.g. 1000-2000"); err == nil {
				r.Seq, err = parseRange(key, v, math.MaxUint32)
			}
		case "prob":
			var v string
			if v, err = next("a probability, e.g. 50%"); err == nil {
				r.Prob, err = parseProb(v)
			}
		case "drop":
			err = r.setKind(Drop, w, hasVal)
		case "delay":
			var v string
			if err = r.setKind(Delay, w, false); err == nil {
				if v, err = next("a duration, e.g. 50ms"); err == nil {
					r.Delay, err = parseDelay(v)
				}
			}
		case "duplicate":
			var v string
			if err = r.setKind(Duplicate, w, false); err == nil {
				if v, err = next("a number of copies, e.g. 1"); err == nil {
					r.N, err = parseCount(key, v, 1, MaxCopies)
				}
			}
		case "rewrite":
			if err = r.setKind(Rewrite, w, false); err != nil {
				break
			}
			if hasVal {
				err = fmt.Errorf("%q: write rewrite FIELD=VALUE, e.g. rewrite ttl=1", w)
				break
			}
			// Every FIELD=VALUE word that follows belongs to rewrite.
			for i+1 < len(words) && strings.Contains(words[i+1], "=") && !isKeyword(words[i+1]) {
				i++
				var f Field
				if f, err = parseField(words[i]); err != nil {
					break
				}
				r.Rewrites = append(r.Rewrites, f)
			}
			if err == nil && len(r.Rewrites) == 0 {
				err = fmt.Errorf("%q needs FIELD=VALUE after it (fields: ttl, tos, window, %s; e.g. rewrite ttl=1)", key, strings.Join(flagNames, ", "))
			}
		case "inject":
			var v string
			if err = r.setKind(InjectRST, w, false); err == nil {
				if v, err = next("what to inject: rst"); err == nil && strings.ToLower(v) != "rst" {
					err = fmt.Errorf("inject %q: only inject rst is known", v)
				}
			}
		case "ack-division", "dupack", "optimistic-ack":
			kind := map[string]Kind{"ack-division": AckDivision, "dupack": DupAck, "optimistic-ack": OptimisticAck}[key]
			var v string
			if err = r.setKind(kind, key, false); err == nil {
				if v, err = next("a number, e.g. " + key + "=4"); err == nil {
					lo, hi := 2, MaxCopies
					switch kind {
					case DupAck:
						lo = 1
					case OptimisticAck:
						lo, hi = 1, MaxAhead
					}
					r.N, err = parseCount(key, v, lo, hi)
				}
			}
		default:
			return Rule{}, fmt.Errorf("unknown word %q (%s)", words[i], Usage)
		}
		if err != nil {
			return Rule{}, err
		}
	}
	if r.Kind == 0 {
		return Rule{}, fmt.Errorf("%q has no action (add one: drop, delay D, duplicate N, rewrite FIELD=VALUE, inject rst, ack-division=M, dupack=K or optimistic-ack=N)", text)
	}
	if r.misbehaviour() {
		if r.Dir == Ingress {
			return Rule{}, fmt.Errorf("%s applies to the ACKs the stack sends: drop \"in\" (a misbehaving receiver mutates its own ACKs)", r.kindWord())
		}
		if r.Proto != AnyProto && r.Proto != TCP {
			return Rule{}, fmt.Errorf("%s applies to TCP: drop %q", r.kindWord(), r.Proto)
		}
		r.Proto = TCP
	}
	if r.Kind == InjectRST {
		if r.Proto != AnyProto && r.Proto != TCP {
			return Rule{}, fmt.Errorf("inject rst applies to TCP: drop %q", r.Proto)
		}
		r.Proto = TCP
	}
	if (r.Flags|r.FlagsClear != 0 || r.Seq.Set) && r.Proto != TCP {
		if r.Proto != AnyProto {
			return Rule{}, fmt.Errorf("flags and seq match TCP: drop %q or write tcp", r.Proto)
		}
		r.Proto = TCP
	}
	for _, f := range r.Rewrites {
		if (f.Name == "window" || flagBit(f.Name) != 0) && r.Proto != TCP {
			if r.Proto != AnyProto {
				return Rule{}, fmt.Errorf("rewrite %s changes TCP: drop %q or write tcp", f.Name, r.Proto)
			}
			r.Proto = TCP
		}
	}
	if (r.Sport.Set || r.Dport.Set || r.Port.Set) && r.Proto != TCP && r.Proto != UDP {
		return Rule{}, fmt.Errorf("ports match TCP or UDP: add tcp or udp to %q", text)
	}
	if r.Src.IsValid() && r.Dst.IsValid() && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		return Rule{}, fmt.Errorf("src %s and dst %s are of different families (give both IPv4 or both IPv6)", r.Src, r.Dst)
	}
	return r, nil
}

func (r *Rule) setKind(k Kind, word string, hasVal bool) error {
	if r.Kind != 0 {
		return fmt.Errorf("%q: a rule has one action and this one already has %s (give another --mutate for a second)", word, r.kindWord())
	}
	if hasVal {
		return fmt.Errorf("%q: %s takes no value", word, strings.SplitN(word, "=", 2)[0])
	}
	r.Kind = k
	return nil
}

func (r Rule) misbehaviour() bool {
	return r.Kind == AckDivision || r.Kind == DupAck || r.Kind == OptimisticAck
}

func (r Rule) kindWord() string {
	switch r.Kind {
	case Drop:
		return "drop"
	case Delay:
		return "delay"
	case Duplicate:
		return "duplicate"
	case Rewrite:
		return "rewrite"
	case InjectRST:
		return "inject rst"
	case AckDivision:
		return "ack-division"
	case DupAck:
		return "dupack"
	case OptimisticAck:
		return "optimistic-ack"
	}
	return "none"
}

// isKeyword tells a word that starts a new clause from a FIELD=VALUE.
func isKeyword(w string) bool {
	k, _, _ := strings.Cut(strings.ToLower(w), "=")
	switch k {
	case "ack-division", "dupack", "optimistic-ack", "prob":
		return true
	}
	return false
}

// String writes the rule back in the form Parse reads.
func (r Rule) String() string {
	var w []string
	if r.Dir == Ingress {
		w = append(w, "in")
	}
	if r.Proto != AnyProto && !(r.misbehaviour()) {
		w = append(w, r.Proto.String())
	}
	if r.Src.IsValid() {
		w = append(w, "src", r.Src.String())
	}
	if r.Dst.IsValid() {
		w = append(w, "dst", r.Dst.String())
	}
	for _, p := range []struct {
		name string
		r    Range
	}{{"sport", r.Sport}, {"dport", r.Dport}, {"port", r.Port}} {
		if p.r.Set {
			w = append(w, p.name, p.r.String())
		}
	}
	if r.Flags|r.FlagsClear != 0 {
		w = append(w, "flags", formatFlags(r.Flags, r.FlagsClear))
	}
	if r.Seq.Set {
		w = append(w, "seq", r.Seq.String())
	}
	switch r.Kind {
	case Delay:
		w = append(w, "delay", r.Delay.String())
	case Duplicate:
		w = append(w, "duplicate", strconv.Itoa(r.N))
	case Rewrite:
		w = append(w, "rewrite")
		for _, f := range r.Rewrites {
			w = append(w, fmt.Sprintf("%s=%d", f.Name, f.Value))
		}
	case AckDivision, DupAck, OptimisticAck:
		w = append(w, fmt.Sprintf("%s=%d", r.kindWord(), r.N))
	default:
		w = append(w, r.kindWord())
	}
	if r.Prob < 1 {
		w = append(w, "prob", strconv.FormatFloat(r.Prob*100, 'g', -1, 64)+"%")
	}
	return strings.Join(w, " ")
}

func parsePrefix(key, v string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(v); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %q is not an address or prefix (write e.g. 10.0.9.2 or 10.0.9.0/24)", key, v)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseRange(key, v string, max uint64) (Range, error) {
	lo, hi, isRange := strings.Cut(v, "-")
	l, err1 := strconv.ParseUint(lo, 10, 64)
	h := l
	var err2 error
	if isRange {
		h, err2 = strconv.ParseUint(hi, 10, 64)
	}
	if err1 != nil || err2 != nil || l > max || h > max || h < l {
		return Range{}, fmt.Errorf("%s %q is not a number or range LO-HI from 0 to %d (write e.g. %s 80 or %s 8000-8080)", key, v, max, key, key)
	}
	return Range{Set: true, Lo: uint32(l), Hi: uint32(h)}, nil
}

// parseFlags reads LETTERS[/MASK]: the flags in LETTERS must be set and
// those in MASK but not in LETTERS clear. S/SA is a SYN without ACK.
func parseFlags(v string) (set, clear uint8, err error) {
	letters, mask, hasMask := strings.Cut(strings.ToUpper(v), "/")
	bits := func(s string) (uint8, error) {
		var b uint8
		for _, c := range s {
			i := strings.IndexRune(tcpFlagLetters, c)
			if i < 0 {
				return 0, fmt.Errorf("flags %q: %q is not a TCP flag letter (use F S R P A U E C, e.g. flags S or flags S/SA)", v, string(c))
			}
			b |= 1 << i
		}
		return b, nil
	}
	if set, err = bits(letters); err != nil {
		return 0, 0, err
	}
	if !hasMask {
		if set == 0 {
			return 0, 0, fmt.Errorf("flags %q: give at least one letter (e.g. flags S)", v)
		}
		return set, 0, nil
	}
	m, err := bits(mask)
	if err != nil {
		return 0, 0, err
	}
	if set&^m != 0 || m == 0 {
		return 0, 0, fmt.Errorf("flags %q: the letters before / must be among those after (e.g. S/SA: SYN set, ACK clear)", v)
	}
	return set, m &^ set, nil
}

func formatFlags(set, clear uint8) string {
	letters := func(b uint8) string {
		var s []byte
		for i := range 8 {
			if b&(1<<i) != 0 {
				s = append(s, tcpFlagLetters[i])
			}
		}
		return string(s)
	}
	if clear == 0 {
		return letters(set)
	}
	return letters(set) + "/" + letters(set|clear)
}

// flagBit is the header bit of a flag named in a rewrite, 0 if none.
func flagBit(name string) uint8 {
	for i, n := range flagNames {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

func parseProb(v string) (float64, error) {
	num, ok := strings.CutSuffix(v, "%")
	p, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || !(p >= 0 && p <= 100) {
		return 0, fmt.Errorf("prob %q is not a percentage from 0%% to 100%% (write e.g. prob 50%%)", v)
	}
	return p / 100, nil
}

func parseDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > MaxDelay {
		return 0, fmt.Errorf("delay %q is not a duration above 0 up to %v (write e.g. delay 50ms)", v, MaxDelay)
	}
	return d, nil
}

func parseCount(key, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s %q is not a whole number from %d to %d (write e.g. %s=%d)", key, v, lo, hi, key, max(lo, min(4, hi)))
	}
	return n, nil
}

func parseField(w string) (Field, error) {
	name, v, _ := strings.Cut(strings.ToLower(w), "=")
	var max uint64
	switch {
	case name == "ttl" || name == "tos":
		max = math.MaxUint8
	case name == "window":
		max = 1 << 30 // bytes: RFC 7323's largest window
	case flagBit(name) != 0:
		max = 1
	default:
		return Field{}, fmt.Errorf("rewrite %q: unknown field %q (fields: ttl, tos, window, %s)", w, name, strings.Join(flagNames, ", "))
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > max {
		return Field{}, fmt.Errorf("rewrite %q: the value of %s is a number from 0 to %d (write e.g. %s=%d)", w, name, max, name, min(max, 1))
	}
	return Field{Name: name, Value: uint32(n)}, nil
}

// Validate checks a rule built by hand as Parse would; a parsed rule is
// valid.
func (r Rule) Validate() error {
	switch {
	case r.Kind < Drop || r.Kind > OptimisticAck:
		return fmt.Errorf("no action (set Kind, e.g. mutate.Drop)")
	case !(r.Prob >= 0 && r.Prob <= 1):
		return fmt.Errorf("prob %v is out of range (use 0 to 1; Parse sets 1)", r.Prob)
	case r.Kind == Delay && (r.Delay <= 0 || r.Delay > MaxDelay):
		return fmt.Errorf("delay %v is out of range (use above 0 up to %v)", r.Delay, MaxDelay)
	case r.Kind == Duplicate && (r.N < 1 || r.N > MaxCopies):
		return fmt.Errorf("duplicate %d is out of range (use 1 to %d)", r.N, MaxCopies)
	case r.Kind == AckDivision && (r.N < 2 || r.N > MaxCopies):
		return fmt.Errorf("ack-division=%d is out of range (use 2 to %d)", r.N, MaxCopies)
	case r.Kind == DupAck && (r.N < 1 || r.N > MaxCopies):
		return fmt.Errorf("dupack=%d is out of range (use 1 to %d)", r.N, MaxCopies)
	case r.Kind == OptimisticAck && (r.N < 1 || r.N > MaxAhead):
		return fmt.Errorf("optimistic-ack=%d is out of range (use 1 to %d)", r.N, MaxAhead)
	case r.Kind == Rewrite && len(r.Rewrites) == 0:
		return fmt.Errorf("rewrite without fields (e.g. ttl=1)")
	case (r.misbehaviour() || r.Kind == InjectRST) && r.Proto != TCP:
		return fmt.Errorf("%s needs Proto TCP", r.kindWord())
	case r.misbehaviour() && r.Dir != Egress:
		return fmt.Errorf("%s applies to the stack's own ACKs (Egress)", r.kindWord())
	}
	for _, f := range r.Rewrites {
		if _, err := parseField(fmt.Sprintf("%s=%d", f.Name, f.Value)); err != nil {
			return err
		}
	}
	return nil
}
