package link

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Loss is a link-endpoint wrapper that drops a fraction of the frames the
// stack sends, chosen by a seeded random number generator so that a run
// can be repeated. Received frames pass untouched: put a Loss on each end
// of a link for loss both ways.
type Loss struct {
	nested.Endpoint
	fraction float64

	mu  sync.Mutex
	rng *rand.Rand

	// Dropped counts the frames dropped.
	Dropped atomic.Uint64
}

var (
	_ stack.LinkEndpoint      = (*Loss)(nil)
	_ stack.GSOEndpoint       = (*Loss)(nil)
	_ stack.NetworkDispatcher = (*Loss)(nil)
)

// WithLoss wraps lower so that each frame written is dropped with
// probability fraction (0 to 1), using a generator seeded with seed.
func WithLoss(lower stack.LinkEndpoint, fraction float64, seed uint64) *Loss {
	l := &Loss{fraction: fraction, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	l.Endpoint.Init(lower, l)
	return l
}

// WritePackets implements stack.LinkWriter. Dropped frames count as sent,
// like frames lost on a wire.
func (l *Loss) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	var kept stack.PacketBufferList
	dropped := 0
	l.mu.Lock()
	for _, pkt := range pkts.AsSlice() {
		if l.rng.Float64() < l.fraction {
			dropped++
			continue
		}
		kept.PushBack(pkt)
	}
	l.mu.Unlock()
	if dropped > 0 {
		l.Dropped.Add(uint64(dropped))
	}
	if kept.Len() == 0 {
		return dropped, nil
	}
	// kept shares the caller's references; the caller releases them.
	n, err := l.Endpoint.WritePackets(kept)
	return n + dropped, err
}
