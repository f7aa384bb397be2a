// Package link holds ustack's link endpoints: the in-memory pair that joins
// two stacks in one process, and the capture wrapper behind --pcap.
package link

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// pairQueueLen is how many frames may wait in one direction of a pair. Deep
// enough that a fast sender rarely waits, shallow enough to bound memory.
const pairQueueLen = 4096

// pairBlockLimit bounds how long a writer waits for room before the frame is
// dropped (and counted). Writers are normally held back, not dropped; the
// limit only exists so that two full queues whose consumers each wait on the
// other cannot hang both stacks forever.
const pairBlockLimit = time.Second

// PairEnd is one end of an in-memory link. Frames written to one end are
// delivered, in order, to the stack attached at the other end by a goroutine
// of the receiving end. A full queue holds the writer back (back-pressure)
// instead of dropping, so a fast sender sees the link's pace, not phantom loss.
type PairEnd struct {
	peer     *PairEnd
	mtu      uint32
	linkAddr tcpip.LinkAddress

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher

	inbox chan *stack.PacketBuffer // frames waiting to be delivered to this end
	done  chan struct{}

	// Inline delivery (InlineDelivery): deliverMu is held while a frame is
	// delivered to this end's stack, by the goroutine or by a writer;
	// pending counts the frames queued to this end and not yet delivered;
	// inlining, shared by both ends, is set while a writer delivers.
	inlineOK  atomic.Bool
	deliverMu sync.Mutex
	pending   atomic.Int64
	inlining  *atomic.Bool
	inlined   atomic.Uint64 // frames delivered by writers (for tests)
	closeMu   sync.Once
	wg        sync.WaitGroup

	// Dropped counts frames dropped because the peer's queue stayed full
	// for pairBlockLimit or the peer was closed.
	Dropped atomic.Uint64
}

var _ stack.LinkEndpoint = (*PairEnd)(nil)

// NewPair returns the two ends of a link with the given MTU (the largest IP
// packet; the pair itself carries no link header, wrap it in ethernet.New
// for Ethernet framing).
func NewPair(mtu uint32, addrA, addrB tcpip.LinkAddress) (*PairEnd, *PairEnd) {
	a := &PairEnd{mtu: mtu, linkAddr: addrA, inbox: make(chan *stack.PacketBuffer, pairQueueLen), done: make(chan struct{})}
	b := &PairEnd{mtu: mtu, linkAddr: addrB, inbox: make(chan *stack.PacketBuffer, pairQueueLen), done: make(chan struct{})}
	a.peer, b.peer = b, a
	a.inlining = new(atomic.Bool)
	b.inlining = a.inlining
	a.wg.Add(1)
	go a.deliverLoop()
	b.wg.Add(1)
	go b.deliverLoop()
	return a, b
}

func (e *PairEnd) deliverLoop() {
	defer e.wg.Done()
	for {
		select {
		case <-e.done:
			e.drain()
			return
		case pkt := <-e.inbox:
			e.deliverMu.Lock()
			e.deliver(pkt)
			e.pending.Add(-1)
			e.deliverMu.Unlock()
		}
	}
}

// deliver hands pkt to the attached stack and releases it.
func (e *PairEnd) deliver(pkt *stack.PacketBuffer) {
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	if d != nil {
		d.DeliverNetworkPacket(0, pkt)
	}
	pkt.DecRef()
}

// InlineDelivery lets a writer deliver a frame to the other end's stack
// itself, on its own goroutine, when nothing is queued there and no other
// delivery is under way; otherwise frames go through the queue and the
// other end's goroutine as before. A request-response exchange then skips
// the hand-off to that goroutine and back for each frame. A delivery
// made inline that makes the other stack write back (an ACK, a reply)
// queues that frame: deliveries never nest, so neither stack is entered
// while the same goroutine holds its locks.
func (e *PairEnd) InlineDelivery() {
	e.inlineOK.Store(true)
	e.peer.inlineOK.Store(true)
}

// tryInline delivers pkt to this end's stack on the caller's goroutine if
// it can do so without overtaking a queued frame or nesting in another
// inline delivery, and reports whether it did.
func (e *PairEnd) tryInline(pkt *stack.PacketBuffer) bool {
	if !e.inlineOK.Load() || e.pending.Load() != 0 || !e.inlining.CompareAndSwap(false, true) {
		return false
	}
	defer e.inlining.Store(false)
	if !e.deliverMu.TryLock() {
		return false
	}
	defer e.deliverMu.Unlock()
	// Frames queued before this one are counted until delivered.
	if e.pending.Load() != 0 {
		return false
	}
	select {
	case <-e.done:
		return false
	default:
	}
	e.deliver(pkt)
	e.inlined.Add(1)
	return true
}

// drain frees the frames queued to a closed end.
func (e *PairEnd) drain() {
	for {
		select {
		case pkt := <-e.inbox:
			pkt.DecRef()
			e.pending.Add(-1)
		default:
			return
		}
	}
}

// enqueued is called after a frame went into the peer's queue: if the
// peer was closed meanwhile, its delivery goroutine may have drained the
// queue before the frame arrived, so the writer drains it.
func (e *PairEnd) enqueued() {
	select {
	case <-e.peer.done:
		e.peer.drain()
	default:
	}
}

// WritePackets implements stack.LinkWriter.
func (e *PairEnd) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for _, pkt := range pkts.AsSlice() {
		// A fresh buffer holding the whole frame: the receiver parses its own
		// headers and must not share the sender's header bookkeeping.
		out := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: pkt.ToBuffer()})
		// A closed peer first: its queue may still have room, and a frame
		// put there would be neither delivered nor counted.
		select {
		case <-e.peer.done:
			out.DecRef()
			e.Dropped.Add(1)
			return n, &tcpip.ErrClosedForSend{}
		default:
		}
		if e.peer.tryInline(out) {
			n++
			continue
		}
		e.peer.pending.Add(1)
		select {
		case e.peer.inbox <- out:
			e.enqueued()
			n++
			continue
		case <-e.peer.done:
			e.peer.pending.Add(-1)
			out.DecRef()
			e.Dropped.Add(1)
			return n, &tcpip.ErrClosedForSend{}
		default:
		}
		if timer == nil {
			timer = time.NewTimer(pairBlockLimit)
		} else {
			timer.Reset(pairBlockLimit)
		}
		select {
		case e.peer.inbox <- out:
			e.enqueued()
			n++
		case <-e.peer.done:
			e.peer.pending.Add(-1)
			out.DecRef()
			e.Dropped.Add(1)
			return n, &tcpip.ErrClosedForSend{}
		case <-timer.C:
			e.peer.pending.Add(-1)
			out.DecRef()
			e.Dropped.Add(1)
			n++ // counted as sent-and-lost, like a wire drop
		}
	}
	return n, nil
}

// Attach implements stack.NetworkLinkEndpoint.
func (e *PairEnd) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

// IsAttached implements stack.NetworkLinkEndpoint.
func (e *PairEnd) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Close stops this end's delivery goroutine; frames still queued are freed.
func (e *PairEnd) Close() {
	e.closeMu.Do(func() { close(e.done) })
	e.wg.Wait()
}

func (e *PairEnd) Wait()                                        {}
func (e *PairEnd) MTU() uint32                                  { return e.mtu }
func (e *PairEnd) SetMTU(mtu uint32)                            {}
func (e *PairEnd) Capabilities() stack.LinkEndpointCapabilities { return 0 }
func (e *PairEnd) MaxHeaderLength() uint16                      { return 0 }
func (e *PairEnd) LinkAddress() tcpip.LinkAddress               { return e.linkAddr }
func (e *PairEnd) SetLinkAddress(addr tcpip.LinkAddress)        {}
func (e *PairEnd) ARPHardwareType() header.ARPHardwareType      { return header.ARPHardwareNone }
func (e *PairEnd) AddHeader(*stack.PacketBuffer)                {}
func (e *PairEnd) ParseHeader(*stack.PacketBuffer) bool         { return true }
func (e *PairEnd) SetOnCloseAction(func())                      {}
