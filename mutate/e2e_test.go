package mutate_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/mutate"
	"github.com/ustack/ustack/shape"
)

func mustParse(t testing.TB, rules ...string) []mutate.Rule {
	t.Helper()
	var rs []mutate.Rule
	for _, s := range rules {
		r, err := mutate.Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// delayed is a stack config whose frames out take 25 ms: two such stacks
// make a 50 ms round trip, long beside the time a window takes to send on
// the in-memory link, so ACK rounds are distinct.
func delayed(t testing.TB, cc string, rules ...string) ustack.Config {
	t.Helper()
	spec, err := shape.Parse("rate 10mbit delay 25ms")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ustack.Config{Link: ustack.Link{Egress: spec}, Mutate: mustParse(t, rules...)}
	cfg.TCP.CongestionControl = cc
	return cfg
}

// cwndOf is the congestion window (packets) of the one TCP endpoint of st.
func cwndOf(st *ustack.Stack) (uint32, error) {
	for _, te := range st.Netstack().RegisteredEndpoints() {
		if ep, ok := te.(*tcp.Endpoint); ok {
			var info tcpip.TCPInfoOption
			if err := ep.GetSockOpt(&info); err != nil {
				return 0, fmt.Errorf("TCP_INFO: %v", err)
			}
			return info.SndCwnd, nil
		}
	}
	return 0, errors.New("no TCP endpoint on the sender")
}

// cwndAt runs a bulk transfer from a reno sender to a receiver with rules
// and returns the sender's congestion window (packets) when the receiver
// has read mark bytes, and the receiver's mutator counters.
func cwndAt(t *testing.T, mark int64, rules ...string) (uint32, mutate.Stats) {
	t.Helper()
	a, b, err := ustack.NewPair(delayed(t, "reno"), delayed(t, "", rules...))
	if err != nil {
		t.Fatalf("NewPair: %v", err)
	}
	defer a.Close()
	defer b.Close()
	ln, err := b.Listen("tcp4", "10.0.9.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := a.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	s, ok := <-accepted
	if !ok {
		t.Fatal("Accept failed")
	}
	defer s.Close()
	type sample struct {
		cwnd uint32
		err  error
	}
	reached := make(chan sample, 1)
	go func() {
		// The writer stops when the connection closes.
		io.Copy(c, zeros{})
	}()
	go func() {
		buf := make([]byte, 64<<10)
		var got int64
		for got < mark {
			n, err := s.Read(buf)
			got += int64(n)
			if err != nil {
				reached <- sample{err: fmt.Errorf("read after %d bytes: %w", got, err)}
				return
			}
		}
		cwnd, err := cwndOf(a)
		reached <- sample{cwnd, err}
		io.Copy(io.Discard, s)
	}()
	r := <-reached
	if r.err != nil {
		t.Fatal(r.err)
	}
	cwnd := r.cwnd
	return cwnd, b.MutateStats()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestMisbehavingReceiver plays each receiver misbehaviour against a Reno
// sender (netstack's TCP sender with ustack's cc.Reno) over a 10 Mbit/s
// link with a 50 ms round trip, and compares the sender's window when the
// receiver has read 60 KB — the paper's object, still in slow start — with
// the window of the same transfer without the attack. The shape, not the
// numbers: measured 40 packets normally, 40 under ack-division=4 and
// dupack=3, 90 under optimistic-ack=64.
//
// The sender resists two of the three, and the test holds it to that:
//   - ACK division: netstack grows the window by the packets an ACK
//     acknowledges in full (snd.go, handleRcvdSegment: Outstanding falls
//     only by whole segments, pCount), not per ACK — RFC 3465's defence;
//   - DupACK spoofing: with SACK, an ACK counts as a duplicate only if it
//     brings new SACK information (snd.go, isDupAck), which a copied ACK
//     never does;
//   - optimistic ACKing: ACKs for data sent but not yet received are
//     accepted, as in every TCP without nonces.
func TestMisbehavingReceiver(t *testing.T) {
	const mark = 60 << 10
	normal, _ := cwndAt(t, mark)
	t.Logf("normal: cwnd %d at %d bytes", normal, mark)
	for _, tc := range []struct {
		rule       string
		vulnerable bool
	}{
		{"ack-division=4", false},
		{"dupack=3", false},
		{"optimistic-ack=64", true},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			cwnd, st := cwndAt(t, mark, tc.rule)
			t.Logf("%s: cwnd %d at %d bytes (%+v)", tc.rule, cwnd, mark, st.Rules[0])
			if r := st.Rules[0]; r.Acted == 0 || r.Injected < r.Acted {
				t.Fatalf("the receiver did not misbehave: %+v", r)
			}
			switch {
			case tc.vulnerable && float64(cwnd) < 1.5*float64(normal):
				t.Errorf("cwnd %d under %s, want at least 1.5 times the %d without it", cwnd, tc.rule, normal)
			case !tc.vulnerable && float64(cwnd) > 1.25*float64(normal):
				t.Errorf("cwnd %d under %s, want no more than the %d without it (and a quarter for the phase of the ACKs)", cwnd, tc.rule, normal)
			}
		})
	}
}
