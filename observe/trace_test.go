package observe_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/seqnum"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/observe"
)

const bulkBytes = 8 << 20

// lossyPair is two stacks over a pair whose ends each drop 1% of the
// frames they send (seeded, so runs repeat). They use Reno: the pinned
// netstack's CUBIC can bring cwnd to 0 after a loss and then never send
// again (see BENCHMARKS.md, "Observation: CUBIC stall under loss").
func lossyPair(t testing.TB) (*ustack.Stack, *ustack.Stack) {
	t.Helper()
	reno := ustack.TCPOptions{CongestionControl: "reno"}
	a, b, err := ustack.NewPair(
		ustack.Config{TCP: reno, LinkLoss: ustack.LinkLoss{Fraction: 0.01, Seed: 1}},
		ustack.Config{TCP: reno, LinkLoss: ustack.LinkLoss{Fraction: 0.01, Seed: 2}})
	if err != nil {
		t.Fatalf("NewPair: %v", err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// bulk sends n pseudo-random bytes from a to b over one TCP connection to
// port and checks they arrive intact. It returns when the connection is
// closed both ways.
func bulk(t testing.TB, a, b *ustack.Stack, port string, n int64) {
	t.Helper()
	ln, err := b.Listen("tcp4", "10.0.9.2:"+port)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			close(got)
			return
		}
		defer c.Close()
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			t.Errorf("receiving: %v", err)
		}
		got <- [32]byte(h.Sum(nil))
	}()
	c, err := a.Dial("tcp4", "10.0.9.2:"+port)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	var seed [32]byte
	src := io.LimitReader(rand.NewChaCha8(seed), n)
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(c, h), src); err != nil {
		t.Fatalf("sending: %v", err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if sum, ok := <-got; !ok || sum != [32]byte(h.Sum(nil)) {
		t.Fatalf("the receiver's SHA-256 differs from the sender's")
	}
	// The peer's FIN comes after it acknowledged everything we sent.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("waiting for the peer's FIN: %v", err)
	}
}

// records splits a trace into its kinds.
type records struct {
	start api.StartRecord
	cb    []api.CBRecord
	pkt   []api.PktRecord
	end   api.EndRecord
	ends  int
}

func parseTrace(t testing.TB, data []byte) records {
	t.Helper()
	var r records
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		var k struct{ Kind string }
		if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
			t.Fatalf("line %d: %v: %s", line, err, sc.Bytes())
		}
		var err error
		switch k.Kind {
		case "start":
			if line != 1 {
				t.Errorf("start record on line %d", line)
			}
			err = json.Unmarshal(sc.Bytes(), &r.start)
		case "cb":
			var c api.CBRecord
			err = json.Unmarshal(sc.Bytes(), &c)
			r.cb = append(r.cb, c)
		case "pkt":
			var p api.PktRecord
			err = json.Unmarshal(sc.Bytes(), &p)
			r.pkt = append(r.pkt, p)
		case "end":
			r.ends++
			err = json.Unmarshal(sc.Bytes(), &r.end)
		default:
			t.Fatalf("line %d: unknown kind %q", line, k.Kind)
		}
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		if r.ends > 0 && k.Kind != "end" {
			t.Fatalf("line %d: a %s record after the end record", line, k.Kind)
		}
	}
	if r.ends != 1 {
		t.Fatalf("%d end records, want 1", r.ends)
	}
	return r
}

// TestTraceLossyBulk traces an 8 MiB transfer over a link losing 1% of
// frames and checks the trace against the stack's own counters.
func TestTraceLossyBulk(t *testing.T) {
	a, b := lossyPair(t)
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	filter, _ := observe.ParseFilter("10.0.9.2:5001")
	go func() {
		_, err := observe.WriteTrace(ctx, &out, nil, observe.TraceConfig{Stack: "a", Filter: filter, Hub: a.TCPProbe(), Mirror: a.FrameMirror()})
		done <- err
	}()
	// Wait until the trace is subscribed, so it sees the handshake.
	testwait.For(t, "the trace to subscribe", func() bool { return a.TCPProbe().Subscribers() > 0 && a.FrameMirror().Subscribers() > 0 })
	raw := a.TCPProbe().Subscribe(filter, 1<<20)
	bulk(t, a, b, "5001", bulkBytes)
	cancel()
	raw.Close()
	var points uint64
	var lastPoint seqnum.Value
	firstS := true
	for len(raw.C()) > 0 {
		s := <-raw.C()
		if !firstS && s.RecoveryPoint != lastPoint {
			points++
		}
		lastPoint, firstS = s.RecoveryPoint, false
	}

	if err := <-done; err != nil {
		t.Fatalf("WriteTrace: %v", err)
	}
	if n := a.TCPProbe().Subscribers() + a.FrameMirror().Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left after the trace ended", n)
	}

	r := parseTrace(t, out.Bytes())
	if r.start.Version != api.TraceVersion || r.start.Stack != "a" || r.start.Filter != "10.0.9.2:5001" {
		t.Errorf("start record %+v", r.start)
	}
	if r.end.Samples != uint64(len(r.cb)) || r.end.Packets != uint64(len(r.pkt)) {
		t.Errorf("end record counts %d samples and %d packets; the trace has %d and %d", r.end.Samples, r.end.Packets, len(r.cb), len(r.pkt))
	}
	if r.end.Dropped != 0 {
		t.Fatalf("the trace dropped %d records; the counts below would not be exact", r.end.Dropped)
	}
	if len(r.cb) == 0 || len(r.pkt) == 0 {
		t.Fatalf("%d cb and %d pkt records", len(r.cb), len(r.pkt))
	}
	for _, c := range r.cb {
		if c.Remote != "10.0.9.2:5001" || c.Local == "" {
			t.Fatalf("cb record of another connection: %+v", c)
		}
	}

	st := a.Netstack().Stats().TCP
	retransmits := st.Retransmits.Value()
	recoveries := st.FastRecovery.Value() + st.SACKRecovery.Value()
	timeouts := st.Timeouts.Value()
	t.Logf("stack: %d frames lost (a) + %d (b), %d retransmits, %d fast/SACK recoveries, %d RTOs",
		a.Lost(), b.Lost(), retransmits, recoveries, timeouts)
	if a.Lost() == 0 {
		t.Fatalf("the loss wrapper dropped nothing")
	}
	if retransmits == 0 {
		t.Fatalf("no retransmissions over a lossy link")
	}

	// Packet records: data segments sent below the highest sequence
	// already sent are retransmissions; the mirror sits above the loss, so it
	// sees every one.
	var high seqnum.Value
	var pktRetrans, dataOut uint64
	first := true
	for _, p := range r.pkt {
		if p.Dir != "out" || seqLen(p) == 0 {
			continue
		}
		dataOut++
		s := seqnum.Value(p.Seq)
		end := s.Add(seqnum.Size(seqLen(p)))
		if !first && s.LessThan(high) {
			pktRetrans++
		}
		if first || high.LessThan(end) {
			high, first = end, false
		}
	}
	if pktRetrans != retransmits {
		t.Errorf("packet records show %d retransmitted segments; the stack counted %d", pktRetrans, retransmits)
	}
	if want := uint64(bulkBytes/1448) * 9 / 10; dataOut < want {
		t.Errorf("%d data segments out, want at least %d", dataOut, want)
	}

	// Control-block records: the endpoint's retransmit counter ends at the
	// stack's, and each entry into fast/SACK recovery cuts cwnd.
	last := r.cb[len(r.cb)-1]
	if last.Retransmits != retransmits {
		t.Errorf("last cb record has retransmits=%d; the stack counted %d", last.Retransmits, retransmits)
	}
	// Recovery: a cb record shows fast/SACK recovery while it lasts, but
	// an episode that starts and ends between two received segments (a
	// tail-loss probe's, one entered by RACK's reorder timer and left at
	// the next ACK) shows in no record. So the records may show fewer
	// entries than the stack counted, never more, and each one cuts
	// ssthresh below the cwnd before it.
	var entries, cuts uint64
	prev := r.cb[0]
	for _, c := range r.cb[1:] {
		inRec := c.Recovery == "fast" || c.Recovery == "sack"
		wasRec := prev.Recovery == "fast" || prev.Recovery == "sack"
		if inRec && !wasRec {
			entries++
			if c.Ssthresh >= prev.Cwnd && c.Ssthresh > 2 {
				t.Errorf("entering recovery at t=%v set ssthresh %d, not below the cwnd before (%d)", c.T, c.Ssthresh, prev.Cwnd)
			}
		}
		if c.Cwnd < prev.Cwnd {
			cuts++
		}
		prev = c
	}
	t.Logf("trace: %d cb, %d pkt records, %d retransmitted segments, %d recovery entries, %d cwnd cuts; %d recovery point changes in samples",
		len(r.cb), len(r.pkt), pktRetrans, entries, cuts, points)
	if entries == 0 || entries > recoveries {
		t.Errorf("cb records enter fast/SACK recovery %d times; the stack counted %d", entries, recoveries)
	}
	if cuts < entries {
		t.Errorf("cwnd went down %d times in %d recoveries", cuts, entries)
	}
	// Every episode, and every RTO, moves netstack's recovery point; the
	// samples see each move unless two episodes fall between two segments.
	if want := recoveries + timeouts; points > want || points < want*9/10 {
		t.Errorf("samples show %d recovery point changes; the stack counted %d recoveries and %d RTOs", points, recoveries, timeouts)
	}
	waitGoroutines(t, goroutines)
}

// A trace whose writer fails (the reader went away) ends at the first
// failed write and leaves no subscription behind.
func TestTraceWriterGone(t *testing.T) {
	a, b := lossyPair(t)
	w := &failingWriter{after: 1} // the start record, then nothing
	done := make(chan error, 1)
	go func() {
		_, err := observe.WriteTrace(context.Background(), w, nil, observe.TraceConfig{Hub: a.TCPProbe(), Mirror: a.FrameMirror()})
		done <- err
	}()
	testwait.For(t, "the trace to subscribe", func() bool { return a.TCPProbe().Subscribers() > 0 && a.FrameMirror().Subscribers() > 0 })
	bulk(t, a, b, "5003", 256<<10)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("WriteTrace returned no error for a failing writer")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteTrace still running 10 s after its writer failed")
	}
	if n := a.TCPProbe().Subscribers() + a.FrameMirror().Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, net.ErrClosed
	}
	w.after--
	return len(p), nil
}

// seqLen is the sequence space a segment takes: its data, SYN and FIN.
func seqLen(p api.PktRecord) int {
	n := p.Len
	for _, f := range p.Flags {
		if f == 'S' || f == 'F' {
			n++
		}
	}
	return n
}
