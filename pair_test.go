package ustack_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/ustack/ustack"
)

// bulkBytes is what each direction carries in TestPairBulk: 256 MiB, which
// on 2 vCPUs takes about 7s for the four subtests. Under the race detector
// 256 MiB took 284s (one full-duplex connection 101-127s, two connections
// 25-30s), so a race build moves 32 MiB: the race detector needs the
// concurrency, not the volume.
func bulkBytes() int64 {
	if raceEnabled {
		return 32 << 20
	}
	return 256 << 20
}

// TestPairBulk moves bulkBytes each way at the same time between two stacks
// of a pair, over IPv4 and IPv6, on one full-duplex connection or on two
// connections, and checks the SHA-256 of each stream on both sides and that
// the pair's back-pressure held every frame (no drops).
func TestPairBulk(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		addrA   string
		addrB   string
		conns   int // 1: one full-duplex connection; 2: one per direction
	}{
		{"ipv4/duplex", "tcp4", addrA4, addrB4, 1},
		{"ipv6/duplex", "tcp6", addrA6, addrB6, 1},
		{"ipv4/two-conns", "tcp4", addrA4, addrB4, 2},
		{"ipv6/two-conns", "tcp6", addrA6, addrB6, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newPair(t, ustack.Config{}, ustack.Config{})
			start := time.Now()
			// aToB carries a's stream to b; bToA the other way.
			aToB, atB := connect(t, a, b, tc.network, tc.addrB)
			btA, bToA := aToB, atB
			if tc.conns == 2 {
				bToA, btA = connect(t, b, a, tc.network, tc.addrA)
			}
			type result struct {
				sent, got *hashingWriter
				err       error
			}
			transfer := func(seed uint64, w, r net.Conn) <-chan result {
				ch := make(chan result, 1)
				sent, got := newHashingWriter(), newHashingWriter()
				werr := make(chan error, 1)
				go func() {
					_, err := io.Copy(io.MultiWriter(w, sent), stream(seed, bulkBytes()))
					if err == nil {
						err = w.(closeWriter).CloseWrite()
					}
					werr <- err
				}()
				go func() {
					_, rerr := io.Copy(got, r)
					err := <-werr
					if err == nil {
						err = rerr
					}
					ch <- result{sent, got, err}
				}()
				return ch
			}
			// a writes on aToB and the peer reads it from atB.
			r1 := transfer(1, aToB, atB)
			r2 := transfer(2, bToA, btA)
			for i, ch := range []<-chan result{r1, r2} {
				r := <-ch
				if r.err != nil {
					t.Fatalf("direction %d: %v", i, r.err)
				}
				if r.sent.n != bulkBytes() || r.got.n != bulkBytes() {
					t.Errorf("direction %d: sent %d bytes, received %d, want %d", i, r.sent.n, r.got.n, bulkBytes())
				}
				if r.sent.Sum() != r.got.Sum() {
					t.Errorf("direction %d: SHA-256 of received stream differs from sent", i)
				}
			}
			d := time.Since(start)
			ta, tb := a.Netstack().Stats().TCP, b.Netstack().Stats().TCP
			t.Logf("%d MiB each way in %v (%.2f Gbit/s per direction); retransmits %d+%d, timeouts %d+%d", bulkBytes()>>20, d.Round(time.Millisecond), float64(bulkBytes())*8/d.Seconds()/1e9,
				ta.Retransmits.Value(), tb.Retransmits.Value(), ta.Timeouts.Value(), tb.Timeouts.Value())
			if n := a.Dropped() + b.Dropped(); n != 0 {
				t.Errorf("pair dropped %d frames (a %d, b %d); back-pressure should hold writers instead", n, a.Dropped(), b.Dropped())
			}
		})
	}
}
