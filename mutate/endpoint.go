package mutate

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// maxFlows bounds the TCP connections whose ACKs the misbehaviours follow;
// past it an arbitrary one is forgotten (its next ACK starts afresh).
const maxFlows = 4096

// Endpoint is a link endpoint that applies rules to the frames passing
// through it. Put it where whole frames pass, above a link emulator, so
// that what it sends then crosses the emulated link.
type Endpoint struct {
	nested.Endpoint
	clock   tcpip.Clock
	linkLen int

	mu      sync.Mutex
	rules   []*ruleState
	rng     *rand.Rand
	flows   map[flowKey]*flow
	pending map[*pendingFrame]struct{}
	closed  bool

	active    atomic.Bool    // there are rules
	looks     [2]atomic.Bool // by Direction: frames that way must be read (a rule, or connections to follow)
	malformed atomic.Uint64
}

type ruleState struct {
	Rule
	matched, acted, injected atomic.Uint64
}

// flowKey is a TCP connection seen from the stack: local then remote.
type flowKey struct {
	local, remote netip.AddrPort
}

// flow is what the misbehaviours remember of a connection.
type flow struct {
	haveAck  bool
	realAck  uint32 // highest ACK the stack itself sent
	sentAck  uint32 // highest ACK sent on the wire (after rewriting)
	mss      int    // largest payload received
	peerFIN  bool   // the peer has sent its FIN
	haveData bool
	// The window scale shifts each end offered in its SYN (RFC 7323),
	// +1 so that 0 is "no SYN seen"; a rewritten window is scaled by its
	// sender's only when both offered one.
	localWS, remoteWS int8
}

// windowShift is the window scale of f's sender on the connection: 0 for
// a SYN (whose window is never scaled), when scaling is off, or when the
// handshake was not seen.
func (fl *flow) windowShift(d Direction, f *frame) uint {
	if fl == nil || f.flags&uint8(header.TCPFlagSyn) != 0 || fl.localWS <= 0 || fl.remoteWS <= 0 {
		return 0
	}
	if d == Egress {
		return uint(fl.localWS - 1)
	}
	return uint(fl.remoteWS - 1)
}

type pendingFrame struct {
	timer tcpip.Timer
	pkt   *stack.PacketBuffer
}

var _ stack.LinkEndpoint = (*Endpoint)(nil)
var _ stack.GSOEndpoint = (*Endpoint)(nil)

// New wraps lower. linkLen is the length of the link header of the frames
// passing through: header.EthernetMinimumSize under Ethernet framing, 0
// for bare IP. A nil clock is the real one.
func New(lower stack.LinkEndpoint, clock tcpip.Clock, linkLen int, rules []Rule) (*Endpoint, error) {
	if linkLen != 0 && linkLen != header.EthernetMinimumSize {
		return nil, fmt.Errorf("link header length %d: use 0 (IP) or %d (Ethernet)", linkLen, header.EthernetMinimumSize)
	}
	if clock == nil {
		clock = tcpip.NewStdClock()
	}
	e := &Endpoint{
		clock: clock, linkLen: linkLen,
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6d757461)),
		flows:   map[flowKey]*flow{},
		pending: map[*pendingFrame]struct{}{},
	}
	if err := e.Set(rules); err != nil {
		return nil, err
	}
	e.Endpoint.Init(lower, e)
	return e, nil
}

// Set puts rules in force for the frames that arrive from now on, in
// place of those before; counters start again from zero.
func (e *Endpoint) Set(rules []Rule) error {
	states := make([]*ruleState, len(rules))
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("rule %d (%s): %w", i+1, r, err)
		}
		states[i] = &ruleState{Rule: r}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rules = states
	e.flows = map[flowKey]*flow{}
	e.active.Store(len(states) > 0)
	var looks [2]bool
	for _, r := range states {
		looks[r.Dir] = true
		if r.misbehaviour() {
			looks[Ingress] = true // the data received, for optimistic-ack
		}
	}
	e.looks[Egress].Store(looks[Egress])
	e.looks[Ingress].Store(looks[Ingress])
	return nil
}

// Rules returns the rules in force.
func (e *Endpoint) Rules() []Rule {
	e.mu.Lock()
	defer e.mu.Unlock()
	rules := make([]Rule, len(e.rules))
	for i, r := range e.rules {
		rules[i] = r.Rule
	}
	return rules
}

// Stats returns each rule's counters.
func (e *Endpoint) Stats() Stats {
	e.mu.Lock()
	rules := e.rules
	e.mu.Unlock()
	st := Stats{Malformed: e.malformed.Load()}
	for _, r := range rules {
		st.Rules = append(st.Rules, RuleStats{
			Rule: r.Rule.String(), Matched: r.matched.Load(), Acted: r.acted.Load(), Injected: r.injected.Load(),
		})
	}
	return st
}

// verdict is what the rules decided for one frame.
type verdict struct {
	changed   bool // data differs from the frame
	drop      bool // the frame itself does not go
	delay     time.Duration
	copies    int      // extra copies of the frame
	before    [][]byte // frames to send ahead of it, same way
	after     [][]byte // frames to send after it, same way
	back      [][]byte // frames to send the other way
	data      []byte   // the whole frame, once an action needed it
	proto     tcpip.NetworkProtocolNumber
	undecided bool // not IP, or no rule for the direction: the frame goes as it is
}

// decide runs the rules of direction d over pkt.
func (e *Endpoint) decide(d Direction, pkt *stack.PacketBuffer) verdict {
	if !e.looks[d].Load() {
		return verdict{undecided: true}
	}
	// Only the headers are read unless a rule acts on the frame.
	size := pkt.Size()
	buf := pkt.ToBuffer()
	buf.Truncate(int64(min(size, e.linkLen+headerBytes)))
	f, res := parseFrame(buf.Flatten(), e.linkLen, size)
	buf.Release()
	switch res {
	case notIP:
		return verdict{undecided: true}
	case malformed:
		// The receiving stack counts and drops it; a wire passes it on.
		e.malformed.Add(1)
		return verdict{undecided: true}
	}
	v := verdict{proto: header.IPv6ProtocolNumber}
	// whole reads the whole frame, for the actions that change or copy it.
	whole := func() {
		if v.data == nil {
			b := pkt.ToBuffer()
			v.data = b.Flatten()
			b.Release()
			f.b = v.data
		}
	}
	if f.v4 {
		v.proto = header.IPv4ProtocolNumber
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fl, newAck := e.track(d, &f)
	dupAcks, optimistic := 0, 0
	ipChanged, l4Changed := false, false
	for _, r := range e.rules {
		if r.Dir != d || !r.matches(&f) {
			continue
		}
		r.matched.Add(1)
		if r.misbehaviour() && !newAck {
			continue
		}
		if r.Kind == OptimisticAck && (fl.peerFIN || !fl.haveData) {
			continue
		}
		if r.Prob < 1 && e.rng.Float64() >= r.Prob {
			continue
		}
		r.acted.Add(1)
		if r.Kind != Drop && r.Kind != Delay {
			whole()
		}
		switch r.Kind {
		case Drop:
			v.drop = true
		case Delay:
			v.delay += r.Delay
		case Duplicate:
			v.copies += r.N
			r.injected.Add(uint64(r.N))
		case Rewrite:
			ip, l4 := f.rewrite(r.Rewrites, fl.windowShift(d, &f))
			ipChanged, l4Changed = ipChanged || ip, l4Changed || l4
		case InjectRST:
			v.after = append(v.after, f.rst(true))
			v.back = append(v.back, f.rst(false))
			r.injected.Add(2)
		case AckDivision:
			// The sender last saw sentAck; split the range up to this
			// ACK into N parts, the last being the frame itself.
			acked := f.ack - fl.sentAck
			prev := fl.sentAck
			for i := 1; i < r.N; i++ {
				a := fl.sentAck + uint32((uint64(acked)*uint64(i)+uint64(r.N)-1)/uint64(r.N))
				if a == prev || a == f.ack {
					continue
				}
				v.before = append(v.before, f.pureAck(a))
				r.injected.Add(1)
				prev = a
			}
		case DupAck:
			dupAcks += r.N
			r.injected.Add(uint64(r.N))
		case OptimisticAck:
			optimistic = max(optimistic, r.N)
			r.injected.Add(uint64(r.N))
		}
		if v.drop {
			break
		}
	}
	if fl != nil && d == Egress && fl.haveAck && !v.drop && seqAfter(f.ack, fl.sentAck) {
		fl.sentAck = f.ack
	}
	for range dupAcks {
		v.after = append(v.after, f.pureAck(f.ack))
	}
	// The optimistic ACKs follow the true one, so that they reach the
	// sender after it: by then it has sent the data the true ACK let it
	// send, and takes them as acknowledging that.
	for i := 1; i <= optimistic && fl != nil; i++ {
		a := f.ack + uint32(i*fl.mss)
		v.after = append(v.after, f.pureAck(a))
		if seqAfter(a, fl.sentAck) {
			fl.sentAck = a
		}
	}
	if ipChanged || l4Changed {
		f.fixChecksums(ipChanged, l4Changed)
		v.changed = true
	}
	return v
}

// track keeps what the misbehaviours need of a TCP connection: on egress
// the ACKs the stack sends, on ingress the data it receives. It returns the
// flow (nil when none is needed) and whether an egress frame is an ACK
// acknowledging new data.
func (e *Endpoint) track(d Direction, f *frame) (*flow, bool) {
	if !f.isTCP() || !e.needFlows() {
		return nil, false
	}
	key := flowKey{netip.AddrPortFrom(f.src, f.sport), netip.AddrPortFrom(f.dst, f.dport)}
	if d == Ingress {
		key = flowKey{key.remote, key.local}
	}
	fl := e.flows[key]
	if fl == nil {
		if len(e.flows) >= maxFlows {
			for k := range e.flows {
				delete(e.flows, k)
				break
			}
		}
		fl = &flow{}
		e.flows[key] = fl
	}
	if f.flags&uint8(header.TCPFlagSyn) != 0 {
		ws := header.ParseSynOptions(f.tcpHeader().Options(), f.flags&uint8(header.TCPFlagAck) != 0).WS // -1: not offered
		if d == Egress {
			fl.localWS = int8(ws + 1)
		} else {
			fl.remoteWS = int8(ws + 1)
		}
	}
	if d == Ingress {
		if n := f.payloadLen(); n > 0 {
			fl.haveData = true
			fl.mss = max(fl.mss, n)
		}
		if f.flags&uint8(header.TCPFlagFin) != 0 {
			fl.peerFIN = true
		}
		return fl, false
	}
	const ack, syn, rst = uint8(header.TCPFlagAck), uint8(header.TCPFlagSyn), uint8(header.TCPFlagRst)
	if f.flags&ack == 0 || f.flags&(syn|rst) != 0 {
		return fl, false
	}
	if !fl.haveAck {
		fl.haveAck, fl.realAck, fl.sentAck = true, f.ack, f.ack
		return fl, false
	}
	newAck := seqAfter(f.ack, fl.realAck)
	if newAck {
		fl.realAck = f.ack
	}
	return fl, newAck
}

// needFlows tells whether a rule follows connections.
func (e *Endpoint) needFlows() bool {
	for _, r := range e.rules {
		if r.misbehaviour() {
			return true
		}
		for _, f := range r.Rewrites {
			if f.Name == "window" { // scaled as the handshake says
				return true
			}
		}
	}
	return false
}

// seqAfter is a > b in sequence space (RFC 793's modulo comparison).
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// WritePackets implements stack.LinkWriter. Frames are taken whether they
// are sent, delayed or dropped, as a wire takes them.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if !e.active.Load() {
		return e.Endpoint.WritePackets(pkts)
	}
	var out stack.PacketBufferList
	defer out.Reset()
	for _, pkt := range pkts.AsSlice() {
		v := e.decide(Egress, pkt)
		if v.undecided {
			out.PushBack(pkt.IncRef())
			continue
		}
		same := e.frames(pkt, &v)
		if v.delay > 0 {
			for _, p := range same {
				e.later(v.delay, p, func(p *stack.PacketBuffer) { e.write(p) })
			}
		} else {
			for _, p := range same {
				out.PushBack(p)
			}
		}
		for _, b := range v.back {
			// Not delivered from inside the stack's send path, which may
			// hold locks the receive path takes.
			e.later(0, e.newPacket(b, nil, v.proto), func(p *stack.PacketBuffer) { e.Endpoint.DeliverNetworkPacket(v.proto, p) })
		}
	}
	if out.Len() > 0 {
		if _, err := e.Endpoint.WritePackets(out); err != nil {
			if _, closed := err.(*tcpip.ErrClosedForSend); closed {
				return 0, err
			}
		}
	}
	return pkts.Len(), nil
}

// DeliverNetworkPacket implements stack.NetworkDispatcher for the lower
// endpoint.
func (e *Endpoint) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if !e.active.Load() {
		e.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	v := e.decide(Ingress, pkt)
	if v.undecided {
		e.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	deliver := func(p *stack.PacketBuffer) { e.Endpoint.DeliverNetworkPacket(proto, p) }
	for _, p := range e.frames(pkt, &v) {
		if v.delay > 0 {
			e.later(v.delay, p, deliver)
			continue
		}
		deliver(p)
		p.DecRef()
	}
	for _, b := range v.back {
		e.later(0, e.newPacket(b, nil, v.proto), func(p *stack.PacketBuffer) { e.write(p) })
	}
}

// frames are the packets v sends the frame's way, in order, each a
// reference the caller owns.
func (e *Endpoint) frames(pkt *stack.PacketBuffer, v *verdict) []*stack.PacketBuffer {
	var ps []*stack.PacketBuffer
	for _, b := range v.before {
		ps = append(ps, e.newPacket(b, pkt, v.proto))
	}
	if !v.drop {
		for range 1 + v.copies {
			if v.changed || v.copies > 0 {
				ps = append(ps, e.newPacket(v.data, pkt, v.proto))
			} else {
				ps = append(ps, pkt.IncRef())
			}
		}
	}
	for _, b := range v.after {
		ps = append(ps, e.newPacket(b, pkt, v.proto))
	}
	return ps
}

// newPacket is a packet of its own holding data, with the metadata of like
// (when given) that a link endpoint reads.
func (e *Endpoint) newPacket(data []byte, like *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber) *stack.PacketBuffer {
	p := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), data...))})
	p.NetworkProtocolNumber = proto
	p.TransportProtocolNumber = header.TCPProtocolNumber
	if like != nil {
		p.NetworkProtocolNumber = like.NetworkProtocolNumber
		p.TransportProtocolNumber = like.TransportProtocolNumber
		p.Hash, p.Owner, p.EgressRoute, p.PktType, p.NICID = like.Hash, like.Owner, like.EgressRoute, like.PktType, like.NICID
	}
	return p
}

// write sends one packet down; the caller keeps its reference.
func (e *Endpoint) write(p *stack.PacketBuffer) {
	var l stack.PacketBufferList
	l.PushBack(p)
	e.Endpoint.WritePackets(l)
}

// later runs send(p) after d and releases p, unless the endpoint closes
// first.
func (e *Endpoint) later(d time.Duration, p *stack.PacketBuffer, send func(*stack.PacketBuffer)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		p.DecRef()
		return
	}
	pf := &pendingFrame{pkt: p}
	e.pending[pf] = struct{}{}
	pf.timer = e.clock.AfterFunc(d, func() {
		e.mu.Lock()
		_, ok := e.pending[pf]
		delete(e.pending, pf)
		e.mu.Unlock()
		if ok {
			send(p)
			p.DecRef()
		}
	})
}

// Capabilities implements stack.LinkEndpoint: while rules are in force the
// stack computes checksums itself, so that a rewritten frame's checksums,
// recomputed here, are whole.
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	c := e.Endpoint.Capabilities()
	if e.active.Load() {
		c &^= stack.CapabilityTXChecksumOffload
	}
	return c
}

// GSOMaxSize implements stack.GSOEndpoint: no super-frames while rules
// are in force, so that rules see the segments the wire carries.
func (e *Endpoint) GSOMaxSize() uint32 {
	if e.active.Load() {
		return 0
	}
	return e.Endpoint.GSOMaxSize()
}

// SupportedGSO implements stack.GSOEndpoint.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if e.active.Load() {
		return stack.GSONotSupported
	}
	return e.Endpoint.SupportedGSO()
}

// Close implements stack.LinkEndpoint: delayed frames are dropped and the
// lower endpoint closed.
func (e *Endpoint) Close() {
	e.mu.Lock()
	e.closed = true
	pending := e.pending
	e.pending = map[*pendingFrame]struct{}{}
	e.mu.Unlock()
	for pf := range pending {
		pf.timer.Stop()
		pf.pkt.DecRef()
	}
	e.Endpoint.Close()
}
