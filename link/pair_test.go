package link

import (
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
