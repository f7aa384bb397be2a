package ustack_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testwait"
)

// segmentsSent is what s's TCP has sent so far, every segment counted.
func segmentsSent(s *ustack.Stack) uint64 {
	return s.Netstack().Stats().TCP.SegmentsSent.Value()
}

// exchange has c send a 14-byte request that srv reads whole and answers
// at once with 14 bytes, which c reads whole.
func exchange(t *testing.T, c, srv net.Conn) {
	t.Helper()
	var req, rep [14]byte
	if _, err := c.Write(req[:]); err != nil {
		t.Fatalf("request: %v", err)
	}
	if _, err := io.ReadFull(srv, req[:]); err != nil {
		t.Fatalf("reading the request: %v", err)
	}
	if _, err := srv.Write(rep[:]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
}

// TestDelayedAck checks tcp.delayed_ack by what the answering stack sends.
// A connection that answers each request at once carries the request's
// acknowledgement on its reply, one segment per exchange, where
// tcp.delayed_ack=0 sends an acknowledgement of its own first, two; so does
// a connection that has not answered yet, or whose answer came later than
// the delayed-ACK time. The counts rely on the stack's own order: the
// acknowledgement is decided under the endpoint's lock, before the answer
// can be sent. The interactive case uses the longest delay allowed (200ms),
// so that only a stall that long between a read and its answer could add a
// segment.
func TestDelayedAck(t *testing.T) {
	const rounds = 20
	for _, tc := range []struct {
		name  string
		delay string
		// first: segments the server sends in the first exchange, before
		// the connection has answered anything; then: in each later one.
		first, then uint64
	}{
		{"acknowledgement on the reply", "200ms", 2, 1},
		{"delayed_ack=0: acknowledgement of its own", "0", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg ustack.Config
			if err := cfg.TCP.Set("tcp.delayed_ack", tc.delay); err != nil {
				t.Fatal(err)
			}
			a, b := newPair(t, ustack.Config{}, cfg)
			c, srv := connect(t, a, b, "tcp4", addrB4)
			base := segmentsSent(b)
			exchange(t, c, srv)
			if got := segmentsSent(b) - base; got != tc.first {
				t.Errorf("the server sent %d segments in the first exchange, want %d", got, tc.first)
			}
			base = segmentsSent(b)
			for range rounds {
				exchange(t, c, srv)
			}
			if got, want := segmentsSent(b)-base, tc.then*rounds; got != want {
				t.Errorf("the server sent %d segments in %d later exchanges, want %d", got, rounds, want)
			}
		})
	}

	t.Run("an answer that comes too late ends the delaying", func(t *testing.T) {
		var cfg ustack.Config
		// Well below the peer's tail-loss probe (200ms and more), which
		// would make the acknowledgement come at once.
		cfg.TCP.DelayedAck = 50 * time.Millisecond
		a, b := newPair(t, ustack.Config{}, cfg)
		c, srv := connect(t, a, b, "tcp4", addrB4)
		exchange(t, c, srv)
		exchange(t, c, srv) // interactive by now
		// A request left unanswered: its acknowledgement waits for the
		// timer, then comes on its own.
		base := segmentsSent(b)
		var buf [14]byte
		if _, err := c.Write(buf[:]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(srv, buf[:]); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, "the delayed acknowledgement", func() bool { return segmentsSent(b) == base+1 })
		if _, err := srv.Write(buf[:]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			t.Fatal(err)
		}
		// No longer interactive: the next request is acknowledged at once,
		// before its reply.
		base = segmentsSent(b)
		exchange(t, c, srv)
		if got := segmentsSent(b) - base; got != 2 {
			t.Errorf("after the late answer the server sent %d segments for an exchange, want 2 (an acknowledgement, then the reply)", got)
		}
	})
}
