// Package observe turns what happens inside a stack into data: TCP
// control-block samples from netstack's TCP probe (Hub), the frames that
// cross a NIC (Mirror), the verdicts of a packet filter's rules (RuleFeed),
// and the trace stream built from them (WriteTrace).
//
// Both Hub and Mirror sit on netstack's data path. When nobody is looking the
// Mirror costs one atomic load and the Hub one map lookup and pointer store
// per segment (it keeps each connection's latest state); when someone is,
// neither blocks the stack: each subscriber has a bounded queue and a drop
// counter.
package observe

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/netstack"
)

// Sample is one TCP control-block snapshot, taken by netstack after it
// processed a received segment. It holds copies, so it may be kept.
type Sample struct {
	Time time.Time
	ID   stack.TransportEndpointID
	// State is the endpoint's TCP state ("ESTABLISHED", ...); "CLOSED"
	// once the stack no longer has the endpoint (after the last ACK of a
	// close).
	State string

	SndUna, SndNxt seqnum.Value
	SndWnd         seqnum.Size // the peer's window, scaled
	RcvNxt         seqnum.Value
	RcvWnd         seqnum.Size // what we advertise: RcvAcc - RcvNxt
	Cwnd, Ssthresh int         // in segments, as netstack keeps them
	SRTT, RTTVar   time.Duration
	RTO            time.Duration
	MSS            int // the sender's maximum payload size
	Sacked         int // segments SACKed by the peer and not yet cumulatively acked
	Outstanding    int // segments in flight, as netstack counts them

	// FastRecovery is true while netstack is in fast (or SACK) recovery;
	// RecoveryPoint is its "recover" sequence (RFC 6582), which an RTO
	// also sets to SndNxt-1.
	FastRecovery  bool
	RecoveryPoint seqnum.Value
	SACKPermitted bool

	// Retransmits and Timeouts are the endpoint's own counters (segments
	// retransmitted, RTOs fired); zero if the endpoint was not found.
	Retransmits, Timeouts uint64
}

// Filter selects connections by one of their ends. The zero Filter
// matches every connection; a zero Addr matches any address, a zero Port
// any port.
type Filter struct {
	Addr netip.Addr
	Port uint16
}

// ParseFilter parses ADDR:PORT, ADDR or :PORT ("[::1]:80" for IPv6 with
// a port). The empty string is the zero Filter.
func ParseFilter(s string) (Filter, error) {
	if s == "" {
		return Filter{}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return Filter{Addr: ap.Addr().Unmap(), Port: ap.Port()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return Filter{Addr: a.Unmap()}, nil
	}
	if len(s) > 1 && s[0] == ':' {
		if ap, err := netip.ParseAddrPort("0.0.0.0" + s); err == nil && ap.Port() != 0 {
			return Filter{Port: ap.Port()}, nil
		}
	}
	return Filter{}, &filterError{s}
}

type filterError struct{ s string }

func (e *filterError) Error() string {
	return "\"" + e.s + "\" is not ADDR:PORT, ADDR or :PORT (e.g. 10.0.2.2:80, [fd00::2]:80 or :443)"
}

func (f Filter) String() string {
	switch {
	case f.Addr.IsValid() && f.Port != 0:
		return netip.AddrPortFrom(f.Addr, f.Port).String()
	case f.Addr.IsValid():
		return f.Addr.String()
	case f.Port != 0:
		return ":" + itoa(int(f.Port))
	}
	return ""
}

// Match reports whether one end of the connection is the filter's.
func (f Filter) Match(id stack.TransportEndpointID) bool {
	return f.matchEnd(id.LocalAddress, id.LocalPort) || f.matchEnd(id.RemoteAddress, id.RemotePort)
}

func (f Filter) matchEnd(a tcpip.Address, port uint16) bool {
	if f.Port != 0 && f.Port != port {
		return false
	}
	if f.Addr.IsValid() {
		if netstack.NetipAddr(a) != f.Addr {
			return false
		}
	}
	return true
}

// sweepEvery is how many connections the hub may start keeping before it
// forgets those the stack no longer has: with the live count added, the
// sweep's cost per new connection stays constant.
const sweepEvery = 256

// sweepIdle is how long after it starts keeping a connection the hub
// sweeps again when no new connections come to start one: the states of
// connections that closed in a burst (a daemon's thousands, about 1.4 KiB
// each) would otherwise be kept until the next burst. A variable for tests;
// each hub reads it once, when made, because its timers outlive the tests.
var sweepIdle = 10 * time.Second

// Hub is netstack's TCP probe: Probe is installed in the TCP protocol
// factory, keeps each connection's latest state for Latest (what ss -i and
// top show) and fans samples out to subscribers (trace).
//
// netstack hands the probe a state it has just copied into a fresh object
// for this call, so keeping it is one pointer store: no copy, no garbage
// beyond what netstack already made. With no subscriber the fan-out is
// one atomic load.
type Hub struct {
	active atomic.Int32 // subscribers
	subs   atomic.Pointer[[]*Subscription]
	ns     atomic.Pointer[stack.Stack]
	mu     sync.Mutex // serialises changes to subs

	latest   sync.Map // stack.TransportEndpointID -> *latestSlot
	added    atomic.Int64
	live     atomic.Int64 // slots left by the last sweep
	sweeping atomic.Bool
	timed    atomic.Bool   // a sweep after idle is due
	idle     time.Duration // sweepIdle when the hub was made
}

// latestSlot holds one connection's latest state. The state is shared
// with every reader and never modified after netstack made it.
type latestSlot struct {
	st atomic.Pointer[tcp.TCPEndpointState]
}

// NewHub returns a hub with no subscribers.
func NewHub() *Hub { return &Hub{idle: sweepIdle} }

// Attach tells the hub the stack whose TCP protocol calls Probe, so
// samples can carry each endpoint's state and counters, and the hub can
// forget connections the stack closed.
func (h *Hub) Attach(ns *stack.Stack) { h.ns.Store(ns) }

// Attached reports whether Attach was called: a hub whose stack was built
// without the probe (tcp.probe=0) is never attached and never has samples.
func (h *Hub) Attached() bool { return h.ns.Load() != nil }

// Probe is the tcp.TCPProbeFunc. netstack calls it under the endpoint's
// lock for every received segment, so it must not block.
func (h *Hub) Probe(st *tcp.TCPEndpointState) {
	id := stack.TransportEndpointID(st.ID)
	if v, ok := h.latest.Load(id); ok {
		v.(*latestSlot).st.Store(st)
	} else {
		h.keepNew(id, st)
	}
	if h.active.Load() != 0 {
		h.fanOut(id, st)
	}
}

// keepNew starts keeping a connection's state, and now and then starts a
// sweep of the connections that are gone.
func (h *Hub) keepNew(id stack.TransportEndpointID, st *tcp.TCPEndpointState) {
	slot := &latestSlot{}
	slot.st.Store(st)
	if v, loaded := h.latest.LoadOrStore(id, slot); loaded {
		v.(*latestSlot).st.Store(st)
		return
	}
	if h.added.Add(1) >= max(sweepEvery, h.live.Load()) && h.Attached() && h.sweeping.CompareAndSwap(false, true) {
		go h.sweep()
	}
	if h.timed.CompareAndSwap(false, true) {
		time.AfterFunc(h.idle, h.timedSweep)
	}
}

// timedSweep is the sweep due idle after a connection was kept; while
// connections are left it is due again idle later.
func (h *Hub) timedSweep() {
	swept := h.Attached() && h.sweeping.CompareAndSwap(false, true)
	if swept {
		h.sweep()
	}
	h.timed.Store(false)
	if (!swept || h.live.Load() > 0) && h.timed.CompareAndSwap(false, true) {
		time.AfterFunc(h.idle, h.timedSweep)
	}
}

// sweep forgets the states of endpoints the stack no longer has.
func (h *Hub) sweep() {
	defer h.sweeping.Store(false)
	ns := h.ns.Load()
	h.added.Store(0)
	var live int64
	h.latest.Range(func(k, _ any) bool {
		id := k.(stack.TransportEndpointID)
		if findTCP(ns, id) == nil {
			h.latest.Delete(k)
		} else {
			live++
		}
		return true
	})
	h.live.Store(live)
}

func (h *Hub) fanOut(id stack.TransportEndpointID, st *tcp.TCPEndpointState) {
	subs := h.subs.Load()
	if subs == nil {
		return
	}
	now := time.Now()
	var s Sample
	filled := false
	for _, sub := range *subs {
		if !sub.filter.Match(id) {
			continue
		}
		if !filled {
			s = h.sample(st, id, now)
			filled = true
		}
		select {
		case sub.ch <- s:
		default:
			sub.dropped.Add(1)
		}
	}
}

func (h *Hub) sample(st *tcp.TCPEndpointState, id stack.TransportEndpointID, now time.Time) Sample {
	snd := &st.Sender
	s := Sample{
		Time:          now,
		ID:            id,
		SndUna:        snd.SndUna,
		SndNxt:        snd.SndNxt,
		SndWnd:        snd.SndWnd,
		RcvNxt:        st.Receiver.RcvNxt,
		RcvWnd:        seqnum.Size(0),
		Cwnd:          snd.SndCwnd,
		Ssthresh:      snd.Ssthresh,
		SRTT:          snd.RTTState.SRTT,
		RTTVar:        snd.RTTState.RTTVar,
		RTO:           snd.RTO,
		MSS:           snd.MaxPayloadSize,
		Sacked:        snd.SackedOut,
		Outstanding:   snd.Outstanding,
		FastRecovery:  snd.FastRecovery.Active,
		RecoveryPoint: snd.FastRecovery.Last,
		SACKPermitted: st.SACKPermitted,
	}
	if st.Receiver.RcvNxt.LessThan(st.Receiver.RcvAcc) {
		s.RcvWnd = st.Receiver.RcvNxt.Size(st.Receiver.RcvAcc)
	}
	// The probe's state lacks the TCP state and the endpoint's counters;
	// the endpoint has them in atomics, readable under its lock.
	if ns := h.ns.Load(); ns != nil {
		s.State = tcp.StateClose.String()
		if ep, ok := findTCP(ns, id).(*tcp.Endpoint); ok {
			s.State = stateName(ep.State())
			if stats, ok := ep.Stats().(*tcp.Stats); ok {
				s.Retransmits = stats.SendErrors.Retransmits.Value()
				s.Timeouts = stats.SendErrors.Timeouts.Value()
			}
		}
	}
	return s
}

// findTCP is the stack's TCP endpoint of connection id, or nil.
func findTCP(ns *stack.Stack, id stack.TransportEndpointID) stack.TransportEndpoint {
	proto := ipv4.ProtocolNumber
	if id.LocalAddress.Len() == header.IPv6AddressSize {
		proto = ipv6.ProtocolNumber
	}
	return ns.FindTransportEndpoint(proto, tcp.ProtocolNumber, id, 0)
}

func stateName(v uint32) string {
	s := tcp.EndpointState(v)
	if s < tcp.StateEstablished || s > tcp.StateError {
		return ""
	}
	return s.String()
}

// Subscription receives the samples of the connections its filter
// matches. Samples that find the queue full are dropped and counted.
type Subscription struct {
	hub     *Hub
	filter  Filter
	ch      chan Sample
	dropped atomic.Uint64
	once    sync.Once
}

// C delivers the samples. It is never closed; stop reading after Close.
func (s *Subscription) C() <-chan Sample { return s.ch }

// Dropped is how many samples found the queue full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Subscribe starts delivering samples matching f into a queue of n.
func (h *Hub) Subscribe(f Filter, n int) *Subscription {
	if n < 1 {
		n = 1
	}
	sub := &Subscription{hub: h, filter: f, ch: make(chan Sample, n)}
	h.mu.Lock()
	defer h.mu.Unlock()
	var list []*Subscription
	if old := h.subs.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, sub)
	h.subs.Store(&list)
	h.active.Add(1)
	return sub
}

// Close stops the subscription. Samples already queued stay readable.
func (s *Subscription) Close() {
	s.once.Do(func() {
		h := s.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		var list []*Subscription
		for _, x := range *h.subs.Load() {
			if x != s {
				list = append(list, x)
			}
		}
		h.subs.Store(&list)
		h.active.Add(-1)
	})
}

// Subscribers is the number of open subscriptions.
func (h *Hub) Subscribers() int {
	if h == nil {
		return 0
	}
	if l := h.subs.Load(); l != nil {
		return len(*l)
	}
	return 0
}

// Latest returns the state netstack reported for the endpoint after the
// last segment it received. The state is shared: read it, do not modify
// it.
func (h *Hub) Latest(id stack.TransportEndpointID) (*tcp.TCPEndpointState, bool) {
	if h == nil || !h.Attached() {
		return nil, false
	}
	v, ok := h.latest.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*latestSlot).st.Load(), true
}
