package link

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/internal/testwait"
)

// gatedDispatcher records the first byte of each delivered frame and
// blocks delivery while gate is held.
type gatedDispatcher struct {
	gate sync.Mutex
	mu   sync.Mutex
	got  []byte
	n    atomic.Int64
}

func (d *gatedDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.gate.Lock()
	d.gate.Unlock()
	v := pkt.ToView()
	d.mu.Lock()
	d.got = append(d.got, v.AsSlice()[0])
	d.mu.Unlock()
	v.Release()
	d.n.Add(1)
}

func (d *gatedDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// writeFrames writes n one-frame batches from e, frame i holding byte(i).
func writeFrames(t *testing.T, e *PairEnd, n int) tcpip.Error {
	t.Helper()
	for i := range n {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData([]byte{byte(i), 1, 2, 3})})
		var l stack.PacketBufferList
		l.PushBack(pkt)
		_, err := e.WritePackets(l)
		pkt.DecRef()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestPairBackPressure fills one direction while the receiver is stalled
// for less than pairBlockLimit: the writer is held back, nothing is dropped
// and every frame arrives in order.
func TestPairBackPressure(t *testing.T) {
	a, b := NewPair(1500, "a", "b")
	defer a.Close()
	defer b.Close()
	var d gatedDispatcher
	b.Attach(&d)
	if !b.IsAttached() || a.IsAttached() {
		t.Fatal("IsAttached does not follow Attach")
	}
	total := pairQueueLen + 100
	d.gate.Lock()
	done := make(chan tcpip.Error, 1)
	go func() { done <- writeFrames(t, a, total) }()
	// The delivery goroutine holds one frame at the gate and the queue
	// fills up: the writer has frames left and must be waiting for room.
	testwait.For(t, "the queue to fill", func() bool { return len(b.inbox) == pairQueueLen })
	select {
	case err := <-done:
		t.Fatalf("writer of %d frames into a %d-frame queue finished (%v) while the receiver was stalled", total, pairQueueLen, err)
	default:
	}
	d.gate.Unlock()
	if err := <-done; err != nil {
		t.Fatalf("WritePackets: %v", err)
	}
	testwait.For(t, "delivery", func() bool { return d.n.Load() == int64(total) })
	if n := a.Dropped.Load(); n != 0 {
		t.Errorf("Dropped = %d, want 0", n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, c := range d.got {
		if c != byte(i) {
			t.Fatalf("frame %d carries %d: frames reordered", i, c)
		}
	}
}

// TestPairDropsAfterLimit stalls the receiver for longer than
// pairBlockLimit: the writer gives up on a frame and counts it.
func TestPairDropsAfterLimit(t *testing.T) {
	a, b := NewPair(1500, "a", "b")
	defer a.Close()
	defer b.Close()
	var d gatedDispatcher
	b.Attach(&d)
	d.gate.Lock()
	start := time.Now()
	// One frame is taken by the stalled delivery goroutine, pairQueueLen
	// fill the queue, the last waits pairBlockLimit and is dropped.
	if err := writeFrames(t, a, pairQueueLen+2); err != nil {
		t.Fatalf("WritePackets: %v", err)
	}
	if took := time.Since(start); took < pairBlockLimit {
		t.Errorf("the overflowing frame was given up after %v, want %v", took, pairBlockLimit)
	}
	if n := a.Dropped.Load(); n != 1 {
		t.Errorf("Dropped = %d, want 1", n)
	}
	d.gate.Unlock()
	testwait.For(t, "delivery", func() bool { return d.n.Load() == pairQueueLen+1 })
}

// TestPairClosedPeer checks that writing to a closed end fails and counts,
// and that Close frees frames still queued and is idempotent.
func TestPairClosedPeer(t *testing.T) {
	a, b := NewPair(1500, "a", "b")
	defer a.Close()
	if err := writeFrames(t, a, 10); err != nil { // queued: b has no dispatcher
		t.Fatal(err)
	}
	b.Close()
	b.Close()
	err := writeFrames(t, a, 1)
	if _, ok := err.(*tcpip.ErrClosedForSend); !ok {
		t.Fatalf("writing to a closed peer: %v, want ErrClosedForSend", err)
	}
	if n := a.Dropped.Load(); n != 1 {
		t.Errorf("Dropped = %d, want 1", n)
	}
	if a.MTU() != 1500 || a.LinkAddress() != "a" || b.LinkAddress() != "b" {
		t.Errorf("MTU %d, link addresses %q %q", a.MTU(), a.LinkAddress(), b.LinkAddress())
	}
}

// TestPairCloseWhileWriting closes an end while frames are being written
// to it: every frame is delivered or freed (the leak check of TestMain
// fails the run otherwise), and the writers see the closed peer.
func TestPairCloseWhileWriting(t *testing.T) {
	for range 200 {
		a, b := NewPair(1500, "a", "b")
		b.Attach(discard{})
		var wg sync.WaitGroup
		started := make(chan struct{}, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				started <- struct{}{}
				for {
					if err := writeFrames(t, a, 1); err != nil {
						return
					}
				}
			}()
		}
		for range 4 {
			<-started
		}
		b.Close()
		wg.Wait()
		a.Close()
	}
}

type discard struct{}

func (discard) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (discard) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)    {}

// TestPairInlineOrder: with inline delivery, frames still arrive in the
// order written: frames queued while another delivery ran (here: a
// delivery held by the gate) are not overtaken by later ones a writer
// could have delivered itself, and once the queue is empty writers
// deliver inline.
func TestPairInlineOrder(t *testing.T) {
	a, b := NewPair(1500, "a", "b")
	defer a.Close()
	defer b.Close()
	a.InlineDelivery()
	d := &gatedDispatcher{}
	b.Attach(d)
	d.gate.Lock()
	a.inlining.Store(true) // as if another frame were being delivered inline
	if err := writeFrames(t, a, 10); err != nil {
		t.Fatal(err)
	}
	a.inlining.Store(false)
	testwait.For(t, "the delivery goroutine held at the gate", func() bool {
		if b.deliverMu.TryLock() { // not yet: let it have the lock
			b.deliverMu.Unlock()
			return false
		}
		return true
	})
	done := make(chan tcpip.Error, 1)
	go func() {
		var err tcpip.Error
		for i := 10; i < 20 && err == nil; i++ {
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData([]byte{byte(i)})})
			var l stack.PacketBufferList
			l.PushBack(pkt)
			_, err = a.WritePackets(l)
			pkt.DecRef()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d.gate.Unlock()
	testwait.For(t, "20 frames delivered", func() bool { return d.n.Load() == 20 })
	d.mu.Lock()
	for i, v := range d.got {
		if v != byte(i) {
			t.Errorf("frame %d delivered as %d: got %v", i, v, d.got)
			break
		}
	}
	d.mu.Unlock()
	if err := writeFrames(t, a, 100); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "120 frames delivered", func() bool { return d.n.Load() == 120 })
	if b.inlined.Load() == 0 {
		t.Error("with the queue empty, no frame was delivered inline")
	}
}

// echoDispatcher answers every frame it is given with a frame back through
// its own end, from within the delivery, as a stack sends an ACK; it counts
// the deliveries made while the same goroutine was already inside another
// delivery (nesting).
type echoDispatcher struct {
	end      *PairEnd
	nested   atomic.Int64
	received atomic.Int64
	reply    bool
}

// deliveriesOnStack counts the echoDispatcher deliveries the calling
// goroutine is inside.
func deliveriesOnStack() int {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	n := 0
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "(*echoDispatcher).DeliverNetworkPacket") {
			n++
		}
		if !more {
			return n
		}
	}
}

func (d *echoDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if deliveriesOnStack() > 1 {
		d.nested.Add(1)
	}
	d.received.Add(1)
	if d.reply {
		r := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData([]byte{0, 1, 2, 3})})
		var l stack.PacketBufferList
		l.PushBack(r)
		d.end.WritePackets(l)
		r.DecRef()
	}
}

func (d *echoDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestPairInlineNoNesting: a frame that a delivery made inline makes the
// other stack write back is queued, not delivered inside the first
// delivery: a stack is never entered by a goroutine already inside the
// other one (which may hold locks the first needs).
func TestPairInlineNoNesting(t *testing.T) {
	a, b := NewPair(1500, "a", "b")
	defer a.Close()
	defer b.Close()
	a.InlineDelivery()
	da := &echoDispatcher{end: a}
	db := &echoDispatcher{end: b, reply: true}
	a.Attach(da)
	b.Attach(db)
	const n = 2000
	if err := writeFrames(t, a, n); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "every reply delivered", func() bool { return da.received.Load() == n })
	if da.nested.Load() != 0 || db.nested.Load() != 0 {
		t.Errorf("deliveries nested: %d into a inside b's, %d into b inside a's", da.nested.Load(), db.nested.Load())
	}
	if b.inlined.Load() == 0 {
		t.Error("no frame was delivered inline")
	}
}
