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

	inbox   chan *stack.PacketBuffer // frames waiting to be delivered to this end
	done    chan struct{}
	closeMu sync.Once
	wg      sync.WaitGroup

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
			e.mu.RLock()
			d := e.dispatcher
			e.mu.RUnlock()
			if d != nil {
				d.DeliverNetworkPacket(0, pkt)
			}
			pkt.DecRef()
		}
	}
}

// drain frees the frames queued to a closed end.
func (e *PairEnd) drain() {
	for {
		select {
		case pkt := <-e.inbox:
			pkt.DecRef()
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
		select {
		case e.peer.inbox <- out:
			e.enqueued()
			n++
			continue
		case <-e.peer.done:
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
			out.DecRef()
			e.Dropped.Add(1)
			return n, &tcpip.ErrClosedForSend{}
		case <-timer.C:
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
