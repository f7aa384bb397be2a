package shape

import (
	"fmt"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/internal/hrtimer"
)

// Direction is one way through an Endpoint.
type Direction int

const (
	// Egress is what the stack sends: WritePackets, on the way to the
	// lower endpoint.
	Egress Direction = iota
	// Ingress is what the stack receives: frames the lower endpoint
	// delivers, on the way up to the stack.
	Ingress
)

func (d Direction) String() string {
	switch d {
	case Egress:
		return "egress"
	case Ingress:
		return "ingress"
	}
	return fmt.Sprintf("direction(%d)", int(d))
}

// Endpoint is a link endpoint that emulates a link's impairments in both
// directions around a lower endpoint. Put it where whole frames pass (under
// ethernet.New, like a capture), so sizes are wire sizes.
//
// While the egress spec changes anything, the Endpoint advertises no GSO,
// so the stack hands it wire-sized packets rather than TCP super-frames.
// netstack decides GSO when a connection starts: a connection opened
// before a spec was set on an endpoint whose lower one offers host GSO
// keeps sending super-frames, each shaped as one packet of its full size
// (and never corrupted). Received super-frames (a host's GRO on tap or
// host attachments) are likewise shaped whole.
type Endpoint struct {
	nested.Endpoint
	lower stack.LinkEndpoint
	dirs  [2]*shaper
	// out is the egress shaper's batch for the lower endpoint, kept for
	// its capacity; only the goroutine delivering for it uses it.
	out stack.PacketBufferList

	// rxOverride, while the ingress shaper delivers a packet, says whether
	// the stack may trust its checksums: the lower endpoint's word,
	// recorded when the packet arrived, or no for a corrupted one.
	rxOverride atomic.Uint32

	closeOnce sync.Once
}

const (
	rxAsLower = iota
	rxValidated
	rxNotValidated
)

var _ stack.LinkEndpoint = (*Endpoint)(nil)
var _ stack.GSOEndpoint = (*Endpoint)(nil)

// New wraps lower so that what the stack sends meets egress and what it
// receives meets ingress. A nil clock is the real one with precise timers
// (package hrtimer: Go's fire up to a millisecond late, which a delay line
// adds on every hop). Either spec may be
// the zero Spec, which lets packets through untouched at almost no cost.
func New(lower stack.LinkEndpoint, clock tcpip.Clock, egress, ingress Spec) (*Endpoint, error) {
	if err := egress.Validate(); err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	if err := ingress.Validate(); err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	if clock == nil {
		clock = hrtimer.NewClock()
	}
	e := &Endpoint{lower: lower}
	e.dirs[Egress] = newShaper(Egress, clock, egress, e.writeBatch)
	e.dirs[Ingress] = newShaper(Ingress, clock, ingress, e.deliverBatch)
	e.Endpoint.Init(lower, e)
	return e, nil
}

// Set puts spec in force in direction d for the packets that arrive from
// now on; those already inside keep what was decided for them (like tc
// qdisc change), except that packets still waiting for the link go at the
// new rate. A spec with a seed restarts the random sequence from it; one
// without continues the current sequence.
func (e *Endpoint) Set(d Direction, spec Spec) error {
	if d != Egress && d != Ingress {
		return fmt.Errorf("unknown direction %d", int(d))
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("%s: %w", d, err)
	}
	e.dirs[d].set(spec)
	return nil
}

// Spec returns the spec in force in direction d.
func (e *Endpoint) Spec(d Direction) Spec {
	return e.Stats(d).Spec
}

// Stats returns direction d's counters and the spec in force.
func (e *Endpoint) Stats(d Direction) Stats {
	if d != Egress && d != Ingress {
		return Stats{}
	}
	st := e.dirs[d].stats()
	st.Direction = d
	return st
}

// Sojourn is a copy of direction d's queueing delays so far (nil for an
// unknown direction).
func (e *Endpoint) Sojourn(d Direction) *Sojourn {
	if d != Egress && d != Ingress {
		return nil
	}
	return e.dirs[d].sojournCopy()
}

// WritePackets implements stack.LinkWriter. Packets are taken whether
// they are sent, delayed or dropped, as a wire takes them.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	s := e.dirs[Egress]
	if s.bypass.Load() {
		n, err := e.Endpoint.WritePackets(pkts)
		s.count(pkts.AsSlice()[:n])
		return n, err
	}
	if !s.enqueue(pkts.AsSlice(), 0, false) {
		return 0, &tcpip.ErrClosedForSend{}
	}
	return pkts.Len(), nil
}

// DeliverNetworkPacket implements stack.NetworkDispatcher for the lower
// endpoint.
func (e *Endpoint) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	s := e.dirs[Ingress]
	if s.bypass.Load() {
		s.sentPackets.Add(1)
		s.sentBytes.Add(uint64(pkt.Size()))
		e.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	// The lower endpoint answers for this packet's checksums while it
	// delivers it; remember its answer for when the packet goes up.
	validated := e.lower.Capabilities()&stack.CapabilityRXChecksumOffload != 0
	one := [1]*stack.PacketBuffer{pkt}
	s.enqueue(one[:], proto, validated)
}

// writeBatch sends a batch down; it returns how many packets the lower
// endpoint did not take.
func (e *Endpoint) writeBatch(batch []*entry) int {
	for _, en := range batch {
		e.out.PushBack(en.pkt)
	}
	n, _ := e.Endpoint.WritePackets(e.out)
	e.out.Reset() // releases the shaper's references
	return len(batch) - n
}

// deliverBatch hands a batch up to the stack.
func (e *Endpoint) deliverBatch(batch []*entry) int {
	for _, en := range batch {
		if en.rxValidated {
			e.rxOverride.Store(rxValidated)
		} else {
			e.rxOverride.Store(rxNotValidated)
		}
		e.Endpoint.DeliverNetworkPacket(en.proto, en.pkt)
		en.pkt.DecRef()
	}
	e.rxOverride.Store(rxAsLower)
	return 0
}

// Capabilities implements stack.LinkEndpoint. Checksum offload is
// adjusted so that a corrupted packet is caught by a checksum: the stack
// computes checksums itself while the egress spec corrupts, and verifies
// those of a corrupted packet it receives.
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	c := e.lower.Capabilities()
	switch e.rxOverride.Load() {
	case rxValidated:
		c |= stack.CapabilityRXChecksumOffload
	case rxNotValidated:
		c &^= stack.CapabilityRXChecksumOffload
	}
	if e.dirs[Egress].stripTXChecksum.Load() {
		c &^= stack.CapabilityTXChecksumOffload
	}
	return c
}

// GSOMaxSize implements stack.GSOEndpoint: no GSO while the egress spec
// changes anything.
func (e *Endpoint) GSOMaxSize() uint32 {
	if !e.egressPassThrough() {
		return 0
	}
	return e.Endpoint.GSOMaxSize()
}

// SupportedGSO implements stack.GSOEndpoint.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if !e.egressPassThrough() {
		return stack.GSONotSupported
	}
	return e.Endpoint.SupportedGSO()
}

func (e *Endpoint) egressPassThrough() bool {
	s := e.dirs[Egress]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spec.PassThrough()
}

// Close implements stack.LinkEndpoint: it stops both directions, frees the
// packets they hold and closes the lower endpoint.
func (e *Endpoint) Close() {
	e.closeOnce.Do(func() {
		e.dirs[Egress].close()
		e.dirs[Ingress].close()
	})
	e.Endpoint.Close()
}
