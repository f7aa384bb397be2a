package drill

import (
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
)

// ParseError is a script that does not parse, or means nothing.
type ParseError struct {
	Path string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg) }

// ParseFile reads and parses a script.
func ParseFile(path string) (*Script, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, string(b))
}

var (
	knownDiffRe  = regexp.MustCompile(`(?m)^\s*//\s*ustack:\s*known difference:\s*(.+?)\s*$`)
	kernelOnlyRe = regexp.MustCompile(`(?m)^\s*//\s*drill:\s*kernel only:\s*(.+?)\s*$`)
)

// Parse parses the text of a script; path names it in errors.
func Parse(path, src string) (*Script, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, &ParseError{Path: path, Line: 0, Msg: err.Error()}
	}
	p := &parser{path: path, toks: toks}
	s, err := p.script()
	if err != nil {
		return nil, err
	}
	s.Path = path
	for _, m := range knownDiffRe.FindAllStringSubmatch(src, -1) {
		s.KnownDifferences = append(s.KnownDifferences, m[1])
	}
	if m := kernelOnlyRe.FindStringSubmatch(src); m != nil {
		s.KernelOnly = m[1]
	}
	return s, nil
}

type parser struct {
	path string
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) peekAt(n int) token {
	if p.pos+n < len(p.toks) {
		return p.toks[p.pos+n]
	}
	return p.toks[len(p.toks)-1]
}
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return &ParseError{Path: p.path, Line: t.line, Msg: fmt.Sprintf("parse error at '%s': ", t) + fmt.Sprintf(format, args...)}
}

func (p *parser) semantic(line int, format string, args ...any) error {
	return &ParseError{Path: p.path, Line: line, Msg: "semantic error: " + fmt.Sprintf(format, args...)}
}

func (p *parser) isPunct(c string) bool { return p.peek().is(tPunct, c) }

func (p *parser) isWord(w string) bool { return p.peek().is(tWord, w) }

func (p *parser) expectPunct(c string) error {
	if t := p.peek(); !t.is(tPunct, c) {
		return p.errAt(t, "expected '%s'", c)
	}
	p.next()
	return nil
}

func (p *parser) expectWord(w string) error {
	if t := p.peek(); !t.is(tWord, w) {
		return p.errAt(t, "expected '%s'", w)
	}
	p.next()
	return nil
}

func (p *parser) integer(what string) (int64, error) {
	t := p.peek()
	if t.kind != tInt && t.kind != tHex {
		return 0, p.errAt(t, "expected %s (an integer)", what)
	}
	p.next()
	return t.i, nil
}

func (p *parser) ranged(what string, max int64) (int64, error) {
	t := p.peek()
	v, err := p.integer(what)
	if err != nil {
		return 0, err
	}
	if v < 0 || v > max {
		return 0, p.semantic(t.line, "%s %d out of range (0..%d)", what, v, max)
	}
	return v, nil
}

func (p *parser) script() (*Script, error) {
	s := &Script{}
	for p.peek().kind == tOption {
		o, err := p.option()
		if err != nil {
			return nil, err
		}
		s.Options = append(s.Options, o)
	}
	if t := p.peek(); t.kind == tBackquoted {
		p.next()
		s.Init = &Command{Line: t.line, Text: t.text}
	}
	for p.peek().kind != tEOF {
		if t := p.peek(); t.kind == tBackquoted && p.peekAt(1).kind == tEOF {
			p.next()
			s.Cleanup = &Command{Line: t.line, Text: t.text}
			break
		}
		e, err := p.event()
		if err != nil {
			return nil, err
		}
		s.Events = append(s.Events, e)
	}
	if len(s.Events) == 0 {
		return nil, &ParseError{Path: p.path, Line: p.peek().line, Msg: "the script has no events"}
	}
	return s, nil
}

func (p *parser) option() (Option, error) {
	t := p.next()
	o := Option{Line: t.line, Name: strings.TrimPrefix(t.text, "--")}
	if !p.isPunct("=") {
		return o, nil
	}
	p.next()
	v := p.next()
	switch v.kind {
	case tInt, tWord, tString, tIPv4, tIPv6, tHex, tFloat:
	default:
		return o, p.errAt(v, "expected a value for --%s", o.Name)
	}
	o.Value, o.HasValue = v.text, true
	// Values such as ipv4-mapped-ipv6 lex as several tokens.
	for p.peek().line == v.line && p.isPunct("-") && p.peekAt(1).kind == tWord {
		p.next()
		o.Value += "-" + p.next().text
	}
	if v.kind == tWord && p.isPunct("=") { // --define=NAME=VALUE
		p.next()
		w := p.next()
		switch w.kind {
		case tString:
			o.Value += `="` + w.text + `"`
		case tBackquoted:
			o.Value += "=`" + w.text + "`"
		default:
			o.Value += "=" + w.text
		}
	}
	return o, nil
}

// timeUsecs parses a time in seconds into microseconds.
func (p *parser) timeUsecs() (int64, error) {
	t := p.peek()
	switch t.kind {
	case tInt:
		p.next()
		if t.i < 0 {
			return 0, p.semantic(t.line, "negative time")
		}
		return t.i * 1e6, nil
	case tFloat:
		p.next()
		if t.f < 0 {
			return 0, p.semantic(t.line, "negative time")
		}
		return int64(math.Round(t.f * 1e6)), nil
	}
	return 0, p.errAt(t, "expected a time in seconds")
}

func (p *parser) event() (*Event, error) {
	first := p.peek()
	e := &Event{Line: first.line}
	var err error
	switch {
	case p.isPunct("*"):
		p.next()
		e.Time = AnyTime
	case p.isPunct("+"):
		p.next()
		if e.Usecs, err = p.timeUsecs(); err != nil {
			return nil, err
		}
		e.Time = RelativeTime
		if p.isPunct("~") {
			p.next()
			if err := p.expectPunct("+"); err != nil {
				return nil, err
			}
			if e.EndUsecs, err = p.timeUsecs(); err != nil {
				return nil, err
			}
			e.Time = RelativeRangeTime
		}
	default:
		if e.Usecs, err = p.timeUsecs(); err != nil {
			return nil, err
		}
		e.Time = AbsoluteTime
		if p.isPunct("~") {
			p.next()
			if e.EndUsecs, err = p.timeUsecs(); err != nil {
				return nil, err
			}
			e.Time = AbsoluteRangeTime
		}
	}
	t := p.peek()
	switch {
	case t.is(tPunct, "<") || t.is(tPunct, ">"):
		e.Packet, err = p.packet()
	case t.kind == tBackquoted:
		p.next()
		e.Command = &Command{Line: t.line, Text: t.text}
	case t.kind == tCode:
		p.next()
		e.Code = &Code{Line: t.line, Text: t.text}
	case t.kind == tWord || t.kind == tEllipsis:
		e.Syscall, err = p.syscall()
	default:
		return nil, p.errAt(t, "expected a packet, a system call, a `command` or a %%{ code }%% block")
	}
	if err != nil {
		return nil, err
	}
	if e.Time != AbsoluteTime && e.Time != RelativeTime && (e.Packet == nil || e.Packet.Dir != Outbound) {
		if e.Time == AnyTime {
			return nil, p.semantic(e.Line, "event time <star> can only be used with outbound packets")
		}
		return nil, p.semantic(e.Line, "event time range can only be used with outbound packets")
	}
	if (e.Time == AbsoluteRangeTime || e.Time == RelativeRangeTime) && e.EndUsecs < e.Usecs {
		return nil, p.semantic(e.Line, "time range is backwards")
	}
	return e, nil
}

func (p *parser) syscall() (*Syscall, error) {
	s := &Syscall{}
	if p.peek().kind == tEllipsis {
		p.next()
		end, err := p.timeUsecs()
		if err != nil {
			return nil, err
		}
		s.Blocking, s.EndUsecs = true, end
	}
	name := p.peek()
	if name.kind != tWord {
		return nil, p.errAt(name, "expected a system call name")
	}
	p.next()
	s.Name = name.text
	if err := p.expectPunct("("); err != nil {
		return nil, err
	}
	if !p.isPunct(")") {
		args, err := p.exprList(")")
		if err != nil {
			return nil, err
		}
		s.Args = args
	}
	if err := p.expectPunct(")"); err != nil {
		return nil, err
	}
	if err := p.expectPunct("="); err != nil {
		return nil, err
	}
	res, err := p.expr()
	if err != nil {
		return nil, err
	}
	s.Result = res
	if t := p.peek(); t.kind == tWord && t.line == name.line {
		p.next()
		s.Errno = t.text
		if !p.isPunct("(") {
			return nil, p.errAt(p.peek(), "expected '(' and a note after errno %s", t.text)
		}
	}
	if p.isPunct("(") && p.peek().line == name.line {
		p.next()
		var words []string
		for !p.isPunct(")") {
			t := p.next()
			if t.kind == tEOF {
				return nil, p.errAt(t, "unterminated note")
			}
			words = append(words, t.text)
		}
		p.next()
		s.Note = strings.Join(words, " ")
	}
	return s, nil
}

func (p *parser) exprList(end string) ([]*Expr, error) {
	var list []*Expr
	for {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		list = append(list, e)
		if !p.isPunct(",") {
			return list, nil
		}
		p.next()
	}
}

func (p *parser) expr() (*Expr, error) {
	l, err := p.primary()
	if err != nil {
		return nil, err
	}
	for p.isPunct("|") {
		p.next()
		r, err := p.primary()
		if err != nil {
			return nil, err
		}
		l = &Expr{Kind: ExprBinary, Op: "|", L: l, R: r}
	}
	return l, nil
}

func (p *parser) primary() (*Expr, error) {
	t := p.peek()
	switch t.kind {
	case tEllipsis:
		p.next()
		return &Expr{Kind: ExprEllipsis}, nil
	case tInt:
		p.next()
		return &Expr{Kind: ExprInt, Int: t.i}, nil
	case tHex:
		p.next()
		return &Expr{Kind: ExprInt, Int: t.i, Hex: true}, nil
	case tString:
		s := ""
		for p.peek().kind == tString {
			s += p.next().text
		}
		e := &Expr{Kind: ExprString, Str: unescape(s)}
		if p.peek().kind == tEllipsis {
			p.next()
			e.Ellipsis = true
		}
		return e, nil
	case tWord:
		switch t.text {
		case "inet_addr", "inet6_addr":
			p.next()
			if err := p.expectPunct("("); err != nil {
				return nil, err
			}
			s := p.next()
			if s.kind != tString {
				return nil, p.errAt(s, "expected an address in quotes")
			}
			if err := p.expectPunct(")"); err != nil {
				return nil, err
			}
			if t.text == "inet_addr" {
				return &Expr{Kind: ExprInAddr, Str: s.text}, nil
			}
			return &Expr{Kind: ExprIn6Addr, Str: s.text}, nil
		}
		p.next()
		w := &Expr{Kind: ExprWord, Str: t.text}
		if p.isPunct("=") {
			p.next()
			r, err := p.expr()
			if err != nil {
				return nil, err
			}
			return &Expr{Kind: ExprBinary, Op: "=", L: w, R: r}, nil
		}
		return w, nil
	case tPunct:
		switch t.text {
		case "[":
			p.next()
			e := &Expr{Kind: ExprList}
			if !p.isPunct("]") {
				l, err := p.exprList("]")
				if err != nil {
					return nil, err
				}
				e.List = l
			}
			return e, p.expectPunct("]")
		case "{":
			return p.brace()
		case "-":
			// A negative number written with a space, as "- 1".
			if n := p.peekAt(1); n.kind == tInt {
				p.next()
				p.next()
				return &Expr{Kind: ExprInt, Int: -n.i}, nil
			}
		}
	}
	return nil, p.errAt(t, "expected an expression")
}

// brace parses the { ... } forms: a sockaddr, msghdr, iovec, pollfd,
// linger, epoll_event or cmsg by their first member's name, else a list.
func (p *parser) brace() (*Expr, error) {
	open := p.next()
	first := p.peek()
	if first.kind == tEllipsis { // iovec {..., LEN}
		p.next()
		if err := p.expectPunct(","); err != nil {
			return nil, err
		}
		n, err := p.integer("iov_len")
		if err != nil {
			return nil, err
		}
		e := &Expr{Kind: ExprStruct, Tag: "iovec", Fields: map[string]*Expr{"iov_len": {Kind: ExprInt, Int: n}}, Order: []string{"iov_len"}}
		return e, p.expectPunct("}")
	}
	tag := "list"
	if first.kind == tWord {
		switch first.text {
		case "sa_family":
			tag = "sockaddr"
		case "msg_name":
			tag = "msghdr"
		case "fd":
			tag = "pollfd"
		case "onoff":
			tag = "linger"
		case "events":
			tag = "epollev"
		case "cmsg_level":
			tag = "cmsg"
		case "scm_sec", "ee_errno":
			return nil, p.errAt(first, "%s structures are not supported", first.text)
		}
	}
	e := &Expr{Kind: ExprStruct, Tag: tag, Fields: map[string]*Expr{}}
	if tag == "list" {
		if p.isPunct("}") {
			p.next()
			return e, nil
		}
		l, err := p.exprList("}")
		if err != nil {
			return nil, err
		}
		e.List = l
		for _, x := range l {
			if x.Kind == ExprBinary && x.Op == "=" && x.L.Kind == ExprWord {
				e.Fields[x.L.Str] = x.R
				e.Order = append(e.Order, x.L.Str)
			}
		}
		return e, p.expectPunct("}")
	}
	for {
		name := p.next()
		if name.kind != tWord {
			return nil, p.errAt(name, "expected a field name in { } after '%s'", open)
		}
		key := name.text
		if p.isPunct("(") { // msg_name(...)=..., msg_iov(1)=[...]
			p.next()
			inner, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expectPunct(")"); err != nil {
				return nil, err
			}
			e.Fields[key+"()"] = inner
		}
		if err := p.expectPunct("="); err != nil {
			return nil, err
		}
		var v *Expr
		var err error
		if p.isWord("htons") {
			p.next()
			if err := p.expectPunct("("); err != nil {
				return nil, err
			}
			n, err := p.ranged("port", 65535)
			if err != nil {
				return nil, err
			}
			if err := p.expectPunct(")"); err != nil {
				return nil, err
			}
			v = &Expr{Kind: ExprInt, Int: n}
		} else if v, err = p.expr(); err != nil {
			return nil, err
		}
		e.Fields[key] = v
		e.Order = append(e.Order, key)
		if p.isPunct(",") {
			p.next()
			continue
		}
		return e, p.expectPunct("}")
	}
}

// unescape turns the C escapes of a script string into bytes.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '0':
			b.WriteByte(0)
		case 'x':
			if i+2 < len(s) {
				if v, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
					b.WriteByte(v[0])
					i += 2
					continue
				}
			}
			b.WriteByte('x')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// packet parses a packet line after its time.
func (p *parser) packet() (*Packet, error) {
	dir := p.next()
	pk := &Packet{Dir: Direction(dir.text[0]), Win: -1, MTU: -1}
	// Encapsulation prefixes: one explicit IP header is supported.
	for p.isWord("ipv4") || p.isWord("ipv6") || p.isWord("gre") || p.isWord("GREv0") || p.isWord("mpls") {
		w := p.next()
		if w.text != "ipv4" && w.text != "ipv6" {
			return nil, p.errAt(w, "%s encapsulation is not supported", w.text)
		}
		if pk.IPVersion != 0 {
			return nil, p.errAt(w, "IP-in-IP encapsulation is not supported")
		}
		if err := p.ipInfo(pk); err != nil {
			return nil, err
		}
		src := p.next()
		want := tIPv4
		pk.IPVersion = 4
		if w.text == "ipv6" {
			want, pk.IPVersion = tIPv6, 6
		}
		if src.kind != want {
			return nil, p.errAt(src, "expected an %s source address", w.text)
		}
		if err := p.expectPunct(">"); err != nil {
			return nil, err
		}
		dst := p.next()
		if dst.kind != want {
			return nil, p.errAt(dst, "expected an %s destination address", w.text)
		}
		if err := p.expectPunct(":"); err != nil {
			return nil, err
		}
		pk.Src, pk.Dst = src.text, dst.text
	}
	if err := p.ipInfo(pk); err != nil {
		return nil, err
	}
	switch {
	case p.isWord("udp"):
		p.next()
		pk.Proto = UDP
		if pk.TOS == TOSECN {
			return nil, p.semantic(dir.line, "ECN can only be used with TCP packets")
		}
		if err := p.ports(pk); err != nil {
			return nil, err
		}
		if err := p.expectPunct("("); err != nil {
			return nil, err
		}
		n, err := p.ranged("UDP payload size", 65535)
		if err != nil {
			return nil, err
		}
		pk.PayloadLen = int(n)
		return pk, p.expectPunct(")")
	case p.isWord("icmp"):
		p.next()
		pk.Proto = ICMP
		return pk, p.icmp(pk)
	}
	pk.Proto = TCP
	if err := p.ports(pk); err != nil {
		return nil, err
	}
	// Flags: a word of flag letters and an optional '.', a lone '.', or
	// '-' for none.
	t := p.next()
	switch {
	case t.kind == tWord:
		pk.Flags = t.text
		if p.isPunct(".") && p.peek().line == t.line {
			p.next()
			pk.Flags += "."
		}
	case t.is(tPunct, "."):
		pk.Flags = "."
	case t.is(tPunct, "-"):
		pk.Flags = ""
	default:
		return nil, p.errAt(t, "expected TCP flags (such as S, S., P., F., R, . or -)")
	}
	for _, c := range pk.Flags {
		if c >= '0' && c <= '7' {
			return nil, p.errAt(t, "AccECN ACE flags (%c) are not supported", c)
		}
		if !strings.ContainsRune("FSRP.EWUA", c) {
			return nil, p.errAt(t, "Invalid TCP flag: '%c' (valid: F S R P . E W U A)", c)
		}
	}
	// seq: START:END(LEN)
	start, err := p.ranged("TCP start sequence number", math.MaxUint32)
	if err != nil {
		return nil, err
	}
	if err := p.expectPunct(":"); err != nil {
		return nil, err
	}
	end, err := p.ranged("TCP end sequence number", math.MaxUint32)
	if err != nil {
		return nil, err
	}
	if err := p.expectPunct("("); err != nil {
		return nil, err
	}
	n, err := p.ranged("TCP payload size", 65535)
	if err != nil {
		return nil, err
	}
	if err := p.expectPunct(")"); err != nil {
		return nil, err
	}
	if uint32(end) != uint32(start)+uint32(n) {
		return nil, p.semantic(t.line, "inconsistent TCP sequence numbers and payload size")
	}
	pk.Seq, pk.PayloadLen = uint32(start), int(n)
	if p.isWord("ack") {
		p.next()
		a, err := p.ranged("TCP ack sequence number", math.MaxUint32)
		if err != nil {
			return nil, err
		}
		pk.Ack = uint32(a)
	}
	if p.isWord("win") {
		p.next()
		w, err := p.ranged("TCP window value", 65535)
		if err != nil {
			return nil, err
		}
		pk.Win = int(w)
	}
	if p.isWord("urg") {
		p.next()
		u, err := p.ranged("urg_ptr value", 65535)
		if err != nil {
			return nil, err
		}
		pk.Urg = uint16(u)
	}
	if p.isPunct("<") && p.peek().line == t.line {
		p.next()
		if p.peek().kind == tEllipsis {
			p.next()
			if pk.Dir != Outbound {
				return nil, p.semantic(t.line, "<...> for TCP options can only be used with outbound packets")
			}
			pk.AnyOptions = true
		} else {
			for {
				o, err := p.tcpOption()
				if err != nil {
					return nil, err
				}
				pk.Options = append(pk.Options, o)
				if !p.isPunct(",") {
					break
				}
				p.next()
			}
		}
		if err := p.expectPunct(">"); err != nil {
			return nil, err
		}
	}
	if p.isPunct("{") && p.peek().line == t.line {
		return nil, p.errAt(p.peek(), "packet mutation ({mut ...}, fuzzing) is not supported")
	}
	if pk.Win < 0 && pk.Dir == Inbound {
		return nil, p.semantic(t.line, "window must be specified for inbound packets")
	}
	if n := optionsLen(pk.Options); n%4 != 0 {
		return nil, p.semantic(t.line, "TCP options are not padded correctly to ensure TCP header is a multiple of 4 bytes: %d excess bytes", n%4)
	} else if n > 40 {
		return nil, p.semantic(t.line, "TCP option list too long (%d bytes, at most 40)", n)
	}
	return pk, nil
}

// ipInfo parses an optional (ip_info) or [ip_info].
func (p *parser) ipInfo(pk *Packet) error {
	var closer string
	switch {
	case p.isPunct("("):
		closer = ")"
	case p.isPunct("["):
		closer = "]"
	default:
		return nil
	}
	// "[" may also open an ICMP's echoed packet or nothing of ours; ip_info
	// always starts with one of these words.
	switch w := p.peekAt(1); {
	case w.kind == tWord && strings.Contains(" noecn ect0 ect1 ce ect01 tos flowlabel ttl ", " "+w.text+" "):
	default:
		return nil
	}
	p.next()
	for {
		w := p.next()
		switch w.text {
		case "noecn", "ect0", "ect1", "ce":
			pk.TOS = TOSECN
			pk.TOSValue = map[string]uint8{"noecn": 0, "ect1": 1, "ect0": 2, "ce": 3}[w.text]
		case "ect01":
			if pk.Dir != Outbound {
				return p.semantic(w.line, "[ect01] can only be used with outbound packets")
			}
			pk.TOS = TOSECT01
		case "tos":
			v, err := p.ranged("tos", 255)
			if err != nil {
				return err
			}
			pk.TOS, pk.TOSValue = TOSValue, uint8(v)
		case "flowlabel":
			v, err := p.ranged("flowlabel", 1<<20-1)
			if err != nil {
				return err
			}
			pk.FlowLabel = uint32(v)
		case "ttl":
			v, err := p.ranged("ttl", 255)
			if err != nil {
				return err
			}
			pk.TTL = uint8(v)
		default:
			return p.errAt(w, "expected ECN, tos, flowlabel or ttl")
		}
		if p.isPunct(",") {
			p.next()
			continue
		}
		return p.expectPunct(closer)
	}
}

// ports parses an optional SRC>DST.
func (p *parser) ports(pk *Packet) error {
	if p.peek().kind == tInt && p.peekAt(1).is(tPunct, ">") {
		src, err := p.ranged("src port", 65535)
		if err != nil {
			return err
		}
		p.next()
		dst, err := p.ranged("dst port", 65535)
		if err != nil {
			return err
		}
		pk.SrcPort, pk.DstPort = uint16(src), uint16(dst)
	}
	return nil
}

func (p *parser) tcpOption() (TCPOption, error) {
	t := p.next()
	if t.kind != tWord {
		return TCPOption{}, p.errAt(t, "expected a TCP option")
	}
	switch t.text {
	case "nop":
		return TCPOption{Kind: OptNOP}, nil
	case "eol":
		return TCPOption{Kind: OptEOL}, nil
	case "mss":
		v, err := p.ranged("mss value", 65535)
		return TCPOption{Kind: OptMSS, MSS: uint16(v)}, err
	case "wscale":
		v, err := p.ranged("window scale shift count", 255)
		return TCPOption{Kind: OptWScale, WScale: uint8(v)}, err
	case "sackOK":
		return TCPOption{Kind: OptSACKOK}, nil
	case "sack":
		o := TCPOption{Kind: OptSACK}
		for p.peek().kind == tInt && p.peekAt(1).is(tPunct, ":") {
			l, err := p.ranged("TCP SACK left sequence number", math.MaxUint32)
			if err != nil {
				return o, err
			}
			p.next()
			r, err := p.ranged("TCP SACK right sequence number", math.MaxUint32)
			if err != nil {
				return o, err
			}
			o.SACK = append(o.SACK, [2]uint32{uint32(l), uint32(r)})
		}
		if len(o.SACK) == 0 {
			return o, p.errAt(p.peek(), "expected SACK blocks LEFT:RIGHT")
		}
		return o, nil
	case "TS":
		if err := p.expectWord("val"); err != nil {
			return TCPOption{}, err
		}
		v, err := p.ranged("ts val", math.MaxUint32)
		if err != nil {
			return TCPOption{}, err
		}
		if err := p.expectWord("ecr"); err != nil {
			return TCPOption{}, err
		}
		e, err := p.ranged("ecr val", math.MaxUint32)
		return TCPOption{Kind: OptTimestamp, TSVal: uint32(v), TSEcr: uint32(e)}, err
	case "FO", "FOEXP", "md5":
		o := TCPOption{Kind: OptFastOpen}
		if t.text == "FOEXP" {
			o.Kind = OptExp
		}
		if t.text == "md5" {
			o.Kind = OptMD5
		}
		if h := p.peek(); (h.kind == tWord || h.kind == tInt) && !p.peekAt(1).is(tPunct, ":") {
			p.next()
			if len(h.text)%2 != 0 {
				return o, p.semantic(h.line, "%s cookie has an odd number of digits", t.text)
			}
			b, err := hex.DecodeString(h.text)
			if err != nil {
				return o, p.semantic(h.line, "%s cookie '%s' is not a valid hex string", t.text, h.text)
			}
			o.Data = b
		}
		if o.Kind == OptFastOpen && len(o.Data) > 16 || o.Kind == OptExp && len(o.Data) > 16 || o.Kind == OptMD5 && len(o.Data) > 16 {
			return o, p.semantic(t.line, "%s of %d bytes is too long", t.text, len(o.Data))
		}
		return o, nil
	}
	return TCPOption{}, p.errAt(t, "unknown TCP option (known: nop, eol, mss, wscale, sackOK, sack, TS val ecr, FO, FOEXP, md5)")
}

// icmp parses what follows "icmp" in a packet line.
func (p *parser) icmp(pk *Packet) error {
	t := p.next()
	if t.kind != tWord {
		return p.errAt(t, "expected an ICMP type")
	}
	pk.ICMPType = t.text
	if c := p.peek(); c.kind == tWord && c.text != "mtu" && c.text != "id" {
		p.next()
		pk.ICMPCode = c.text
	}
	if p.isWord("mtu") {
		p.next()
		v, err := p.ranged("ICMP MTU", math.MaxUint32)
		if err != nil {
			return err
		}
		pk.MTU = int(v)
	}
	if p.isWord("id") {
		p.next()
		v, err := p.ranged("ICMP echo id", 65535)
		if err != nil {
			return err
		}
		pk.EchoID = int(v)
	}
	pk.EchoedProto = TCP
	if !p.isPunct("[") {
		return nil
	}
	p.next()
	switch {
	case p.isWord("udp"):
		p.next()
		pk.EchoedProto = UDP
		if err := p.expectPunct("("); err != nil {
			return err
		}
		n, err := p.ranged("UDP payload size", 65535)
		if err != nil {
			return err
		}
		pk.EchoedLen = int(n)
		if err := p.expectPunct(")"); err != nil {
			return err
		}
	case p.isWord("raw"):
		p.next()
		pk.EchoedRaw = true
		if err := p.expectPunct("("); err != nil {
			return err
		}
		n, err := p.ranged("raw payload size", 65535)
		if err != nil {
			return err
		}
		pk.EchoedLen = int(n)
		if err := p.expectPunct(")"); err != nil {
			return err
		}
	default:
		start, err := p.ranged("TCP start sequence number", math.MaxUint32)
		if err != nil {
			return err
		}
		if err := p.expectPunct(":"); err != nil {
			return err
		}
		end, err := p.ranged("TCP end sequence number", math.MaxUint32)
		if err != nil {
			return err
		}
		if err := p.expectPunct("("); err != nil {
			return err
		}
		n, err := p.ranged("TCP payload size", 65535)
		if err != nil {
			return err
		}
		if err := p.expectPunct(")"); err != nil {
			return err
		}
		if uint32(end) != uint32(start)+uint32(n) {
			return p.semantic(t.line, "inconsistent TCP sequence numbers and payload size")
		}
		pk.EchoedSeq, pk.EchoedLen = uint32(start), int(n)
	}
	return p.expectPunct("]")
}
