package link

import (
	"math"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// sendThrough writes n one-frame batches through a Loss over a channel
// endpoint and returns how many frames came out below it.
func sendThrough(t *testing.T, fraction float64, seed uint64, n int) (*Loss, int) {
	t.Helper()
	ch := channel.New(n, 1500, "")
	defer ch.Close()
	l := WithLoss(ch, fraction, seed)
	for range n {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, 100))})
		var list stack.PacketBufferList
		list.PushBack(pkt)
		if got, err := l.WritePackets(list); got != 1 || err != nil {
			t.Fatalf("WritePackets: %d, %v; want 1 frame and no error, dropped or not", got, err)
		}
		list.DecRef()
	}
	out := 0
	for pkt := ch.Read(); pkt != nil; pkt = ch.Read() {
		pkt.DecRef()
		out++
	}
	return l, out
}

func TestLoss(t *testing.T) {
	const n = 20000
	for _, fraction := range []float64{0, 0.01, 0.1, 0.5} {
		l, out := sendThrough(t, fraction, 42, n)
		dropped := int(l.Dropped.Load())
		if dropped+out != n {
			t.Errorf("fraction %v: %d passed + %d dropped != %d", fraction, out, dropped, n)
		}
		// Within five standard deviations of the binomial mean.
		mean, sd := fraction*n, math.Sqrt(n*fraction*(1-fraction))
		if math.Abs(float64(dropped)-mean) > 5*sd+0.5 {
			t.Errorf("fraction %v: dropped %d of %d, want about %.0f", fraction, dropped, n, mean)
		}
	}
	// The same seed drops the same frames; another seed others.
	a, _ := sendThrough(t, 0.1, 7, 5000)
	b, _ := sendThrough(t, 0.1, 7, 5000)
	c, _ := sendThrough(t, 0.1, 8, 5000)
	if a.Dropped.Load() != b.Dropped.Load() {
		t.Errorf("seed 7 dropped %d then %d frames", a.Dropped.Load(), b.Dropped.Load())
	}
	if a.Dropped.Load() == c.Dropped.Load() {
		t.Logf("seeds 7 and 8 dropped the same number of frames (%d); possible but unlikely", a.Dropped.Load())
	}
}
