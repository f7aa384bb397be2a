package observe

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Dir is a frame's direction as seen by the stack.
type Dir uint8

const (
	In  Dir = iota // received by the stack
	Out            // sent by the stack
)

func (d Dir) String() string {
	if d == Out {
		return "out"
	}
	return "in"
}

// Frame is a copy of one link frame (whole, or its first SnapLen bytes).
type Frame struct {
	Time time.Time
	Dir  Dir
	Data []byte // shared by all subscribers: read, never modify
	Len  int    // the frame's length on the wire, >= len(Data)
}

// Mirror is a link-endpoint wrapper that copies the frames crossing it to
// subscribers, as a switch's mirror port does, for live capture and packet
// traces. It can be switched on
// and off at run time by subscribing and closing; with no subscriber a
// frame costs one atomic load. Each subscriber has a bounded queue: a
// frame that finds it full is dropped and counted, the data path never
// waits.
type Mirror struct {
	nested.Endpoint
	active atomic.Int32
	subs   atomic.Pointer[[]*FrameSubscription]
	mu     sync.Mutex
}

var (
	_ stack.LinkEndpoint      = (*Mirror)(nil)
	_ stack.GSOEndpoint       = (*Mirror)(nil)
	_ stack.NetworkDispatcher = (*Mirror)(nil)
)

// NewMirror wraps lower. Place it where frames are whole (below the Ethernet
// framing).
func NewMirror(lower stack.LinkEndpoint) *Mirror {
	m := &Mirror{}
	m.Endpoint.Init(lower, m)
	return m
}

// WritePackets implements stack.LinkWriter.
func (m *Mirror) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if m.active.Load() != 0 {
		now := time.Now()
		for _, pkt := range pkts.AsSlice() {
			m.publish(now, Out, pkt)
		}
	}
	return m.Endpoint.WritePackets(pkts)
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (m *Mirror) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if m.active.Load() != 0 {
		m.publish(time.Now(), In, pkt)
	}
	m.Endpoint.DeliverNetworkPacket(proto, pkt)
}

func (m *Mirror) publish(now time.Time, dir Dir, pkt *stack.PacketBuffer) {
	subs := m.subs.Load()
	if subs == nil || len(*subs) == 0 {
		return
	}
	snap := 0
	for _, s := range *subs {
		snap = max(snap, s.snapLen)
	}
	b := pkt.ToBuffer()
	n := int(b.Size())
	if int64(snap) < b.Size() {
		b.Truncate(int64(snap))
	}
	f := Frame{Time: now, Dir: dir, Data: b.Flatten(), Len: n}
	b.Release()
	for _, s := range *subs {
		g := f
		if len(g.Data) > s.snapLen {
			g.Data = g.Data[:s.snapLen]
		}
		select {
		case s.ch <- g:
		default:
			s.dropped.Add(1)
		}
	}
}

// FrameSubscription receives copies of the mirror's frames.
type FrameSubscription struct {
	mirror  *Mirror
	snapLen int
	ch      chan Frame
	dropped atomic.Uint64
	once    sync.Once
}

// C delivers the frames. It is never closed; stop reading after Close.
func (s *FrameSubscription) C() <-chan Frame { return s.ch }

// Dropped is how many frames found the queue full.
func (s *FrameSubscription) Dropped() uint64 { return s.dropped.Load() }

// Subscribe starts copying frames, at most snapLen bytes of each, into a
// queue of n.
func (m *Mirror) Subscribe(snapLen, n int) *FrameSubscription {
	s := &FrameSubscription{mirror: m, snapLen: max(snapLen, 1), ch: make(chan Frame, max(n, 1))}
	m.mu.Lock()
	defer m.mu.Unlock()
	var list []*FrameSubscription
	if old := m.subs.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, s)
	m.subs.Store(&list)
	m.active.Add(1)
	return s
}

// Close stops the subscription. Frames already queued stay readable.
func (s *FrameSubscription) Close() {
	s.once.Do(func() {
		m := s.mirror
		m.mu.Lock()
		defer m.mu.Unlock()
		var list []*FrameSubscription
		for _, x := range *m.subs.Load() {
			if x != s {
				list = append(list, x)
			}
		}
		m.subs.Store(&list)
		m.active.Add(-1)
	})
}

// Subscribers is the number of open subscriptions.
func (m *Mirror) Subscribers() int {
	if l := m.subs.Load(); l != nil {
		return len(*l)
	}
	return 0
}
