package drill

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// A script writes packets in its own terms: its addresses and ports are
// implied, its sequence numbers count from the ISNs it chose, its TCP
// timestamps are its own. Each connection maps between those and the live
// values, as packetdrill does: inbound sequence numbers are injected as
// written, outbound ones are rebased on the stack's ISN (learned from its
// SYN or SYN-ACK), acknowledgements and SACK blocks of inbound packets the
// other way; an inbound TS ecr is the live TS val of the outbound packet
// whose script TS val it names.

// noteConnect makes the connection a connect call opens the one that
// packets without ports concern.
func (r *run) noteConnect(fd int) {
	s := r.socks[fd]
	if s == nil {
		s = &sock{fd: fd, domain: int(r.cfg.socketDomain()), proto: TCP}
		r.socks[fd] = s
	}
	c := &conn{proto: s.proto, local: netip.AddrPortFrom(r.cfg.LocalIP, s.localPort),
		remote: netip.AddrPortFrom(r.cfg.RemoteIP, r.cfg.ConnectPort)}
	s.conn = c
	r.conns = append(r.conns, c)
	r.sut = c
}

// noteDestination gives a datagram socket sending to the default
// destination its flow.
func (r *run) noteDestination(fd int) {
	s := r.socks[fd]
	if s == nil || s.proto == TCP {
		return
	}
	if s.conn == nil {
		r.datagramConn(s)
	}
	s.conn.remote = netip.AddrPortFrom(r.cfg.RemoteIP, r.cfg.ConnectPort)
}

// datagramConn gives a bound datagram socket its flow; until it sends, the
// scripted peer's port is an ephemeral one.
func (r *run) datagramConn(s *sock) {
	if s.conn != nil {
		return
	}
	c := &conn{proto: s.proto, local: netip.AddrPortFrom(r.cfg.LocalIP, s.localPort),
		remote: netip.AddrPortFrom(r.cfg.RemoteIP, r.ephemeral())}
	s.conn = c
	r.conns = append(r.conns, c)
	r.sut = c
}

func (r *run) ephemeral() uint16 {
	p := r.nextEphemeral
	r.nextEphemeral++
	return p
}

// connFor finds the connection a script packet concerns, making one for an
// inbound packet that starts one.
func (r *run) connFor(pk *Packet) (*conn, error) {
	if pk.SrcPort != 0 || pk.DstPort != 0 {
		lp, rp := pk.DstPort, pk.SrcPort
		if pk.Dir == Outbound {
			lp, rp = pk.SrcPort, pk.DstPort
		}
		for _, c := range r.conns {
			if c.local.Port() == lp && c.remote.Port() == rp {
				return c, nil
			}
		}
		c := &conn{proto: pk.Proto, passive: true, local: netip.AddrPortFrom(r.cfg.LocalIP, lp),
			remote: netip.AddrPortFrom(r.cfg.RemoteIP, rp)}
		r.conns = append(r.conns, c)
		return c, nil
	}
	if pk.Proto == ICMP {
		if r.sut == nil {
			return nil, fmt.Errorf("no matching socket for script packet")
		}
		return r.sut, nil
	}
	if r.sut != nil && r.sut.proto == pk.Proto {
		return r.sut, nil
	}
	if pk.Dir == Outbound {
		return nil, fmt.Errorf("no matching socket for script packet")
	}
	// An inbound packet with no connection to go to starts one: a SYN to
	// the listener, a datagram to the bound socket, or a packet to
	// nowhere (which the stack answers with a reset).
	port := r.cfg.BindPort
	if r.listener != nil && r.listener.localPort != 0 {
		port = r.listener.localPort
	}
	c := &conn{proto: pk.Proto, passive: true, local: netip.AddrPortFrom(r.cfg.LocalIP, port),
		remote: netip.AddrPortFrom(r.cfg.RemoteIP, r.ephemeral())}
	r.conns = append(r.conns, c)
	r.sut = c
	return c, nil
}

// inbound injects an inbound packet.
func (r *run) inbound(e *Event, at int64) error {
	pk := e.Packet
	if err := r.waitFor(e, at); err != nil {
		return err
	}
	c, err := r.connFor(pk)
	if err != nil {
		return r.lineErr(e.Line, "error handling packet: %v", err)
	}
	b, err := r.buildInbound(pk, c)
	if err != nil {
		return r.lineErr(e.Line, "error handling packet: %v", err)
	}
	r.logf("inbound injected packet: %s %s", secs(r.t.now()), formatScript(pk))
	if err := r.t.inject(b); err != nil {
		return r.lineErr(e.Line, "error handling packet: injecting: %v", err)
	}
	return nil
}

// addrs are a packet's live addresses.
func (r *run) addrs(pk *Packet, c *conn) (src, dst netip.Addr, err error) {
	src, dst = c.remote.Addr(), c.local.Addr()
	if pk.Dir == Outbound {
		src, dst = dst, src
	}
	if pk.IPVersion != 0 {
		if src, err = netip.ParseAddr(pk.Src); err != nil {
			return src, dst, fmt.Errorf("bad source address %s", pk.Src)
		}
		if dst, err = netip.ParseAddr(pk.Dst); err != nil {
			return src, dst, fmt.Errorf("bad destination address %s", pk.Dst)
		}
	}
	return src, dst, nil
}

// ackOffset turns a script ack (which counts from the script's ISN) into a
// live one.
func (c *conn) ackOffset() uint32 {
	if !c.isnKnown {
		return 0
	}
	return c.liveISN - c.scriptISN
}

// buildInbound makes the live packet for an inbound script packet.
func (r *run) buildInbound(pk *Packet, c *conn) ([]byte, error) {
	src, dst, err := r.addrs(pk, c)
	if err != nil {
		return nil, err
	}
	tos := pk.TOSValue
	if pk.TOS == TOSNone {
		tos = 0
	}
	switch pk.Proto {
	case TCP:
		flags := flagBits(pk.Flags)
		ack := pk.Ack
		if flags&flagACK != 0 {
			ack += c.ackOffset()
		}
		opts := make([]TCPOption, len(pk.Options))
		copy(opts, pk.Options)
		for i, o := range opts {
			switch o.Kind {
			case OptSACK:
				blocks := make([][2]uint32, len(o.SACK))
				for j, b := range o.SACK {
					blocks[j] = [2]uint32{b[0] + c.ackOffset(), b[1] + c.ackOffset()}
				}
				opts[i].SACK = blocks
			case OptTimestamp:
				if flags&flagACK == 0 {
					break
				}
				if live, ok := c.tsMap[o.TSEcr]; ok {
					opts[i].TSEcr = live
				} else if r.cfg.TSEcrScaled && c.tsKnown {
					opts[i].TSEcr = o.TSEcr - c.tsFirstScript + c.tsFirstLive
				} else {
					return nil, fmt.Errorf("unable to infer live TS ecr for script TS ecr %d;  no matching or preceding outbound TS val", o.TSEcr)
				}
			}
		}
		sport, dport := c.remote.Port(), c.local.Port()
		if pk.SrcPort != 0 {
			sport, dport = pk.SrcPort, pk.DstPort
		}
		seg := tcpSegment(sport, dport, pk.Seq, ack, flags, uint16(pk.Win), pk.Urg, encodeOptions(opts), pk.PayloadLen)
		return ipHeader(src, dst, uint8(header.TCPProtocolNumber), tos, pk.TTL, pk.FlowLabel, seg, 16), nil
	case UDP:
		sport, dport := c.remote.Port(), c.local.Port()
		if pk.SrcPort != 0 {
			sport, dport = pk.SrcPort, pk.DstPort
		}
		d := udpDatagram(sport, dport, pk.PayloadLen)
		return ipHeader(src, dst, uint8(header.UDPProtocolNumber), tos, pk.TTL, pk.FlowLabel, d, 6), nil
	}
	// ICMP: an error quoting a packet the stack sent on c, or an echo.
	v6 := src.Is6()
	typ, code, err := icmpTypeCode(v6, pk.ICMPType, pk.ICMPCode)
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 8)
	msg[0], msg[1] = typ, code
	if pk.MTU >= 0 {
		if v6 {
			binary.BigEndian.PutUint32(msg[4:], uint32(pk.MTU))
		} else {
			binary.BigEndian.PutUint16(msg[6:], uint16(pk.MTU))
		}
	}
	if pk.EchoID > 0 {
		binary.BigEndian.PutUint16(msg[4:], uint16(pk.EchoID))
	}
	isEcho := (!v6 && (typ == 0 || typ == 8)) || (v6 && (typ == 128 || typ == 129))
	if pk.EchoedRaw {
		msg = append(msg, make([]byte, max(pk.EchoedLen-8, 0))...)
	} else if !isEcho {
		// The quoted packet: its IP header and first 8 bytes.
		var l4 []byte
		proto := uint8(header.TCPProtocolNumber)
		inner := 20 + pk.EchoedLen
		if pk.EchoedProto == UDP {
			proto = uint8(header.UDPProtocolNumber)
			l4 = make([]byte, 8)
			binary.BigEndian.PutUint16(l4, c.local.Port())
			binary.BigEndian.PutUint16(l4[2:], c.remote.Port())
			binary.BigEndian.PutUint16(l4[4:], uint16(8+pk.EchoedLen))
			inner = 8 + pk.EchoedLen
		} else {
			l4 = make([]byte, 8)
			binary.BigEndian.PutUint16(l4, c.local.Port())
			binary.BigEndian.PutUint16(l4[2:], c.remote.Port())
			seq := pk.EchoedSeq
			if c.isnKnown {
				seq += c.liveISN - c.scriptISN
			}
			binary.BigEndian.PutUint32(l4[4:], seq)
		}
		quoted := ipHeader(dst, src, proto, 0, 0, 0, make([]byte, inner), -1)
		hl := header.IPv4MinimumSize
		if v6 {
			hl = header.IPv6MinimumSize
		}
		msg = append(msg, quoted[:hl]...)
		msg = append(msg, l4...)
	}
	proto := uint8(header.ICMPv4ProtocolNumber)
	if v6 {
		proto = uint8(header.ICMPv6ProtocolNumber)
	}
	return ipHeader(src, dst, proto, tos, pk.TTL, pk.FlowLabel, msg, 2), nil
}

// outboundEvent expects the stack to have sent a packet.
func (r *run) outboundEvent(e *Event, at, end int64) error {
	pk := e.Packet
	fail := func(format string, args ...any) error {
		return r.lineErr(e.Line, "error handling packet: %s", fmt.Sprintf(format, args...))
	}
	c, err := r.connFor(pk)
	if err != nil {
		return fail("%v", err)
	}
	tol := r.tolerance(at)
	limit := end + tol
	if e.Time == AnyTime {
		limit = -1
	}
	w, err := r.nextPacket(c, pk, limit)
	if err != nil {
		return err
	}
	script := fmt.Sprintf("script packet: %9s %s", secs(at), formatScript(pk))
	if w == nil {
		by := "no packet was sent at all"
		if limit >= 0 {
			by = "none was sent by " + secs(limit) + " sec"
		}
		if r.t.virtual() && limit >= 0 {
			return fail("expected an outbound packet at %s sec (tolerance %s sec) but %s\n%s", secs(at), secs(tol), by, script)
		}
		return fail("timed out waiting for an outbound packet expected at %s sec (tolerance %s sec): %s\n%s", secs(at), secs(tol), by, script)
	}
	actual := r.mapOutbound(c, pk, w)
	dump := script + "\n" + fmt.Sprintf("actual packet: %9s %s", secs(w.at), r.formatActual(actual))
	r.logf("outbound sniffed packet: %s %s", secs(w.at), r.formatActual(actual))
	if msg := r.verify(pk, actual); msg != "" {
		if r.cfg.NonFatalPacket {
			r.logf("%s:%d: warning handling packet: %s\n%s", r.s.Path, e.Line, msg, dump)
			return nil
		}
		return fail("%s\n%s", msg, dump)
	}
	if e.Time != AnyTime {
		if e.Time == AbsoluteRangeTime || e.Time == RelativeRangeTime {
			if w.at < at-tol || w.at > end+tol {
				return fail("timing error: expected outbound packet in time range %s~%s sec but happened at %s sec\n%s",
					secs(at), secs(end), secs(w.at), dump)
			}
		} else if w.at < at-tol || w.at > at+tol {
			return fail("timing error: expected outbound packet at %s sec but happened at %s sec; tolerance %s sec\n%s",
				secs(at), secs(w.at), secs(tol), dump)
		}
	}
	return nil
}

// nextPacket returns the first packet sent on c not yet matched, waiting
// (or, in virtual time, letting time run timer by timer) until limit µs
// (-1: as long as something can still happen).
func (r *run) nextPacket(c *conn, pk *Packet, limit int64) (*wire, error) {
	for {
		if r.t.virtual() {
			if err := r.t.settle(); err != nil {
				return nil, err
			}
		}
		deadline := time.Now()
		if !r.t.virtual() {
			wait := time.Duration(limit-r.t.now()) * time.Microsecond
			if limit < 0 {
				wait = 60 * time.Second
			}
			deadline = deadline.Add(wait)
		}
		r.queue = append(r.queue, r.t.outbound(deadline)...)
		for i, w := range r.queue {
			if r.belongs(c, pk, w) {
				r.queue = append(r.queue[:i:i], r.queue[i+1:]...)
				return w, nil
			}
		}
		if !r.t.virtual() {
			if limit >= 0 && r.t.now() > limit || limit < 0 && time.Now().After(deadline) {
				return nil, nil
			}
			continue
		}
		d, ok := r.t.nextDeadline()
		if !ok || limit >= 0 && d > limit {
			return nil, nil
		}
		r.t.advanceTo(d)
	}
}

// belongs reports whether live packet w was sent on c (learning c's port
// when the stack chose it).
func (r *run) belongs(c *conn, pk *Packet, w *wire) bool {
	src, dst, err := r.addrs(pk, c)
	if err != nil || w.src != src || w.dst != dst {
		return false
	}
	switch pk.Proto {
	case ICMP:
		return w.isICMP()
	case TCP:
		if !w.isTCP() {
			return w.isICMP() && c.proto == TCP
		}
	case UDP:
		if !w.isUDP() {
			return w.isICMP() && c.proto == UDP
		}
	}
	sp, dp := c.local.Port(), c.remote.Port()
	if pk.SrcPort != 0 {
		sp, dp = pk.SrcPort, pk.DstPort
	}
	if w.dport != dp {
		return false
	}
	if sp == 0 {
		// A connect's first packet names the port the stack chose.
		if pk.Proto == TCP && (w.flags&flagSYN == 0 || w.flags&flagACK != 0) {
			return false
		}
		c.local = netip.AddrPortFrom(c.local.Addr(), w.sport)
		return true
	}
	return w.sport == sp
}

// actualPacket is a live packet in the script's terms.
type actualPacket struct {
	w    *wire
	seq  uint32
	ack  uint32
	opts []TCPOption
	bad  string // options that do not parse
}

// mapOutbound brings a live packet into the script's terms, learning the
// stack's ISN and TS vals.
func (r *run) mapOutbound(c *conn, pk *Packet, w *wire) *actualPacket {
	a := &actualPacket{w: w, seq: w.seq, ack: w.ack}
	if !w.isTCP() || pk.Proto != TCP {
		return a
	}
	if w.flags&flagSYN != 0 && !c.isnKnown {
		c.isnKnown, c.scriptISN, c.liveISN = true, pk.Seq, w.seq
	}
	if c.isnKnown {
		a.seq = w.seq - c.liveISN + c.scriptISN
	}
	opts, err := decodeOptions(w.opts)
	if err != nil {
		a.bad = err.Error()
	}
	a.opts = opts
	var scriptTS *TCPOption
	for i := range pk.Options {
		if pk.Options[i].Kind == OptTimestamp {
			scriptTS = &pk.Options[i]
		}
	}
	for i := range a.opts {
		o := &a.opts[i]
		if o.Kind != OptTimestamp {
			continue
		}
		if scriptTS == nil {
			// Shown in script terms if there are any yet, else from 0.
			switch {
			case c.tsKnown:
				o.TSVal = c.tsFirstScript + (o.TSVal - c.tsFirstLive)
			default:
				if !c.tsShownSet {
					c.tsShown, c.tsShownSet = o.TSVal, true
				}
				o.TSVal -= c.tsShown
			}
			continue
		}
		if c.tsMap == nil {
			c.tsMap = map[uint32]uint32{}
		}
		c.tsMap[scriptTS.TSVal] = o.TSVal
		if !c.tsKnown {
			c.tsKnown, c.tsFirstScript, c.tsFirstLive = true, scriptTS.TSVal, o.TSVal
		}
		o.TSVal = c.tsFirstScript + (o.TSVal - c.tsFirstLive)
	}
	return a
}

// fieldErr is packetdrill's message for a field that differs.
func fieldErr(name string, want, got uint32) string {
	return fmt.Sprintf("live packet field %s: expected: %d (%#x) vs actual: %d (%#x)", name, want, want, got, got)
}

// verify compares an outbound packet with the script's; "" if it matches.
func (r *run) verify(pk *Packet, a *actualPacket) string {
	w := a.w
	wantProto := map[Protocol]string{TCP: "tcp", UDP: "udp", ICMP: "icmp"}[pk.Proto]
	gotProto := "ip protocol " + itoa(int64(w.proto))
	switch {
	case w.isTCP():
		gotProto = "tcp"
	case w.isUDP():
		gotProto = "udp"
	case w.isICMP():
		gotProto = "icmp"
	}
	if wantProto != gotProto {
		return fmt.Sprintf("live packet header layer 2: expected: %s header vs actual: %s header", wantProto, gotProto)
	}
	switch pk.TOS {
	case TOSECN:
		if got := w.tos & 3; got != pk.TOSValue {
			return fieldErr("ip_ecn", uint32(pk.TOSValue), uint32(got))
		}
	case TOSECT01:
		if got := w.tos & 3; got != 1 && got != 2 {
			return fmt.Sprintf("live packet field ip_ecn: expected: 0x1 or 0x2 vs actual: %#x", got)
		}
	case TOSValue:
		if w.tos != pk.TOSValue {
			return fieldErr("tos", uint32(pk.TOSValue), uint32(w.tos))
		}
	}
	if pk.TTL != 0 && w.ttl != pk.TTL {
		return fieldErr("ttl", uint32(pk.TTL), uint32(w.ttl))
	}
	switch pk.Proto {
	case UDP:
		if len(w.payload) != pk.PayloadLen {
			return fieldErr("udp_len", uint32(8+pk.PayloadLen), uint32(8+len(w.payload)))
		}
		return ""
	case ICMP:
		typ, code, err := icmpTypeCode(w.v6, pk.ICMPType, pk.ICMPCode)
		if err != nil {
			return err.Error()
		}
		if w.icmpType != typ {
			return fieldErr("icmp_type", uint32(typ), uint32(w.icmpType))
		}
		if w.icmpCode != code {
			return fieldErr("icmp_code", uint32(code), uint32(w.icmpCode))
		}
		return ""
	}
	want := flagBits(pk.Flags)
	for _, f := range []struct {
		name string
		bit  uint16
	}{{"tcp_fin", flagFIN}, {"tcp_syn", flagSYN}, {"tcp_rst", flagRST}, {"tcp_psh", flagPSH}, {"tcp_ack", flagACK},
		{"tcp_urg", flagURG}, {"tcp_ece", flagECE}, {"tcp_cwr", flagCWR}, {"tcp_ae", flagAE}} {
		if want&f.bit != w.flags&f.bit {
			return fieldErr(f.name, boolBit(want&f.bit), boolBit(w.flags&f.bit))
		}
	}
	if a.seq != pk.Seq {
		return fieldErr("tcp_seq", pk.Seq, a.seq)
	}
	if a.ack != pk.Ack {
		return fieldErr("tcp_ack_seq", pk.Ack, a.ack)
	}
	if pk.Win >= 0 && uint16(pk.Win) != w.win {
		return fieldErr("tcp_window", uint32(pk.Win), uint32(w.win))
	}
	if pk.Urg != w.urg {
		return fieldErr("tcp_urg_ptr", uint32(pk.Urg), uint32(w.urg))
	}
	if !pk.AnyOptions {
		if a.bad != "" {
			return "bad outbound TCP options: " + a.bad
		}
		if msg := r.verifyOptions(pk.Options, a.opts); msg != "" {
			return msg
		}
	}
	if len(w.payload) != pk.PayloadLen {
		return fmt.Sprintf("live packet payload: expected %d bytes vs actual %d bytes", pk.PayloadLen, len(w.payload))
	}
	for _, b := range w.payload {
		if b != 0 {
			return "incorrect outbound data payload"
		}
	}
	return ""
}

func boolBit(b uint16) uint32 {
	if b != 0 {
		return 1
	}
	return 0
}

// verifyOptions compares options kind by kind, in order; a TS val is
// checked only with --tcp_ts_tick_usecs, and never its ecr, as
// packetdrill does.
func (r *run) verifyOptions(want, got []TCPOption) string {
	n := max(len(want), len(got))
	for i := 0; i < n; i++ {
		if i >= len(want) || i >= len(got) || want[i].Kind != got[i].Kind {
			return "bad outbound TCP options"
		}
		w, g := want[i], got[i]
		switch w.Kind {
		case OptNOP, OptEOL, OptSACKOK:
		case OptTimestamp:
			if tick := r.cfg.TSTickUsecs; tick != 0 {
				d := int64(int32(g.TSVal - w.TSVal))
				if d < 0 {
					d = -d
				}
				if d*tick > r.cfg.ToleranceUsecs {
					return fmt.Sprintf("bad outbound TCP timestamp value, tolerance %d", r.cfg.ToleranceUsecs)
				}
			}
		default:
			if optionsString([]TCPOption{w}) != optionsString([]TCPOption{g}) {
				return fmt.Sprintf("bad value outbound TCP option %d", w.Kind)
			}
		}
	}
	return ""
}

// formatScript writes a script packet as a script line would.
func formatScript(pk *Packet) string {
	var b strings.Builder
	if pk.IPVersion != 0 {
		fmt.Fprintf(&b, "ipv%d %s > %s: ", pk.IPVersion, pk.Src, pk.Dst)
	}
	switch pk.Proto {
	case UDP:
		fmt.Fprintf(&b, "udp (%d)", pk.PayloadLen)
		return b.String()
	case ICMP:
		fmt.Fprintf(&b, "icmp %s %s", pk.ICMPType, pk.ICMPCode)
		return strings.TrimSpace(b.String())
	}
	flags := flagString(flagBits(pk.Flags))
	fmt.Fprintf(&b, "%s %d:%d(%d)", flags, pk.Seq, pk.Seq+uint32(pk.PayloadLen), pk.PayloadLen)
	if flagBits(pk.Flags)&flagACK != 0 {
		fmt.Fprintf(&b, " ack %d", pk.Ack)
	}
	if pk.Win >= 0 {
		fmt.Fprintf(&b, " win %d", pk.Win)
	}
	if pk.Urg != 0 {
		fmt.Fprintf(&b, " urg %d", pk.Urg)
	}
	if pk.AnyOptions {
		b.WriteString(" <...>")
	} else if len(pk.Options) > 0 {
		fmt.Fprintf(&b, " <%s>", optionsString(pk.Options))
	}
	return b.String()
}

// formatActual writes a live packet in the script's terms.
func (r *run) formatActual(a *actualPacket) string {
	w := a.w
	switch {
	case w.isUDP():
		return fmt.Sprintf("udp (%d)", len(w.payload))
	case w.isICMP():
		return fmt.Sprintf("icmp type_%d code_%d", w.icmpType, w.icmpCode)
	case !w.isTCP():
		return fmt.Sprintf("ip protocol %d", w.proto)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d:%d(%d)", flagString(w.flags), a.seq, a.seq+uint32(len(w.payload)), len(w.payload))
	if w.flags&flagACK != 0 {
		fmt.Fprintf(&b, " ack %d", a.ack)
	}
	fmt.Fprintf(&b, " win %d", w.win)
	if w.urg != 0 {
		fmt.Fprintf(&b, " urg %d", w.urg)
	}
	if len(a.opts) > 0 {
		fmt.Fprintf(&b, " <%s>", optionsString(a.opts))
	}
	return b.String()
}
