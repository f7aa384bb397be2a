package ustack_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/inspect"
	"github.com/ustack/ustack/shape"
)

func mustSpec(t testing.TB, text string) shape.Spec {
	t.Helper()
	s, err := shape.Parse(text)
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	return s
}

// minRTT is the shortest of n round trips of a byte over c, whose peer
// echoes.
func minRTT(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	buf := make([]byte, 1)
	for range n {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// TestLink sets a delay on one stack of a pair, both ways, and changes it
// while a connection runs: round trips take the delay twice, then the new
// one, and the counters see the frames.
func TestLink(t *testing.T) {
	link := ustack.SymmetricLink(mustSpec(t, "delay 25ms"))
	a, b := newPair(t, ustack.Config{Link: link}, ustack.Config{})
	if got := a.Link(); got.Egress.Delay != 25*time.Millisecond || got.Ingress.Delay != 25*time.Millisecond {
		t.Errorf("Link() = %v", got)
	}
	if got := b.Link(); got.String() != "egress none; ingress none" {
		t.Errorf("b's Link() = %v", got)
	}
	c, s := connect(t, a, b, "tcp4", addrB4)
	go io.Copy(s, s)
	rtt := minRTT(t, c, 5)
	if rtt < 50*time.Millisecond {
		t.Errorf("round trip %v over a link of 25 ms each way", rtt)
	}
	t.Logf("round trip with 25 ms each way: %v", rtt)

	if err := a.SetLink(shape.Egress, mustSpec(t, "delay 1ms")); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLink(shape.Ingress, shape.Spec{}); err != nil {
		t.Fatal(err)
	}
	if rtt := minRTT(t, c, 5); rtt < time.Millisecond || rtt >= 25*time.Millisecond {
		t.Errorf("round trip %v after the delay was changed to 1 ms one way", rtt)
	}
	if got := a.Link().String(); got != "egress delay 1ms; ingress none" {
		t.Errorf("Link() after SetLink: %s", got)
	}
	eg, in := a.LinkStats(shape.Egress), a.LinkStats(shape.Ingress)
	if eg.SentPackets < 10 || in.SentPackets < 10 || eg.Dropped() != 0 || eg.Direction != shape.Egress {
		t.Errorf("stats: egress %v; ingress %v", eg, in)
	}
}

// TestLinkLoss drops a fifth of the frames one way, under several seeds,
// and sees the loss counted and every transfer arrive whole. Under such
// loss the pinned netstack once lost its resend timer with a FIN in flight
// and never sent again (netstack/patches/0002); a transfer that stops
// fails with the sender's TCP state instead of hanging the package.
func TestLinkLoss(t *testing.T) {
	for seed := 1; seed <= 6; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			spec := mustSpec(t, fmt.Sprintf("loss 20%% seed %d", seed))
			a, b := newPair(t, ustack.Config{Link: ustack.Link{Egress: spec}}, ustack.Config{})
			c, s := connect(t, a, b, "tcp4", addrB4)
			got := make(chan *hashingWriter, 1)
			go func() {
				w := newHashingWriter()
				io.Copy(w, s)
				got <- w
			}()
			sent := newHashingWriter()
			if _, err := io.Copy(io.MultiWriter(c, sent), stream(uint64(seed), 512<<10)); err != nil {
				t.Fatal(err)
			}
			c.(closeWriter).CloseWrite()
			select {
			case w := <-got:
				if w.n != sent.n || w.Sum() != sent.Sum() {
					t.Fatalf("received %d bytes (SHA-256 equal: %v) of %d", w.n, w.Sum() == sent.Sum(), sent.n)
				}
			case <-time.After(time.Minute):
				info, _ := json.Marshal(inspect.Sockets(&inspect.Target{Stack: a}, true))
				t.Fatalf("the transfer stopped; the sender's sockets: %s", info)
			}
			st := a.LinkStats(shape.Egress)
			if st.DroppedLoss == 0 || st.DroppedQueue != 0 {
				t.Errorf("egress stats: %v", st)
			}
			frac := float64(st.DroppedLoss) / float64(st.DroppedLoss+st.SentPackets)
			if frac < 0.1 || frac > 0.3 {
				t.Errorf("lost %.1f%% of the frames with loss 20%%", 100*frac)
			}
		})
	}
}

// TestLinkErrors: a spec that cannot work is a ConfigError for "Link" that
// names the direction and says what to do, from New and from SetLink.
func TestLinkErrors(t *testing.T) {
	var ce *ustack.ConfigError
	_, err := ustack.New(ustack.Config{Link: ustack.Link{Ingress: shape.Spec{Limit: 10}}})
	if !errors.As(err, &ce) || ce.Field != "Link" || !strings.HasPrefix(ce.Err.Error(), "ingress: ") || !strings.Contains(err.Error(), "rate") {
		t.Errorf("New with limit but no rate: %v", err)
	}
	_, _, err = ustack.NewPair(ustack.Config{Link: ustack.Link{Egress: shape.Spec{Duplicate: 2}}}, ustack.Config{})
	if !errors.As(err, &ce) || ce.Field != "Link" || !strings.HasPrefix(ce.Err.Error(), "egress: ") {
		t.Errorf("NewPair with duplicate 200%%: %v", err)
	}
	a, _ := newPair(t, ustack.Config{}, ustack.Config{})
	if err := a.SetLink(shape.Egress, shape.Spec{Limit: 10}); !errors.As(err, &ce) || ce.Field != "Link" {
		t.Errorf("SetLink with limit but no rate: %v", err)
	}
	if err := a.SetLink(shape.Direction(7), shape.Spec{}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "unknown direction") {
		t.Errorf("SetLink in direction 7: %v", err)
	}
}

// TestLinkOnNAT: the nat attachment's NIC has the emulator too.
func TestLinkOnNAT(t *testing.T) {
	st, err := ustack.New(ustack.Config{Link: ustack.SymmetricLink(mustSpec(t, "rate 10mbit delay 5ms"))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := st.Link().String(); got != "egress rate 10mbit delay 5ms; ingress rate 10mbit delay 5ms" {
		t.Errorf("Link() = %s", got)
	}
}

// BenchmarkLinkRate measures TCP goodput over a pair whose one end sends
// at 100 Mbit/s (1500-byte MTU), and reports it against the most the rate
// allows: 1448 bytes of payload per 1514-byte frame (TCP timestamps on).
// It is a benchmark rather than a test because reaching the rate needs
// the CPU time that a loaded machine may not give.
func BenchmarkLinkRate(b *testing.B) {
	link := ustack.Link{Egress: mustSpec(b, "rate 100mbit")}
	a, s := newPair(b, ustack.Config{Link: link}, ustack.Config{})
	c, srv := connect(b, a, s, "tcp4", addrB4)
	sent, took := bulkSend(b, c, srv)
	goodput := float64(sent) * 8 / took.Seconds()
	ideal := 100e6 * 1448 / 1514
	b.ReportMetric(goodput/1e6, "Mbit/s")
	b.ReportMetric(100*goodput/ideal, "%ofrate")
}

// TestLinkBlackoutRecovery cuts the data direction of a running transfer
// until the sender's retransmission timer fires twice, then restores it.
// The sender must then resend what it had in flight in slow start and go
// on. The pinned netstack instead let RACK start fast recovery on the
// first ACK after the timeout, counting every segment sent before it as
// still in flight: the window stayed full, and each further timeout
// resent a segment or two (netstack/patches/0005). The transfer must
// deliver 4 MiB more, whole, before the sender's timeouts reach 6.
func TestLinkBlackoutRecovery(t *testing.T) {
	const more = 4 << 20
	a, b := newPair(t, ustack.Config{Link: ustack.SymmetricLink(mustSpec(t, "delay 10ms"))}, ustack.Config{})
	c, s := connect(t, a, b, "tcp4", addrB4)
	var received atomic.Int64
	got := make(chan *hashingWriter, 1)
	go func() {
		w := newHashingWriter()
		io.Copy(io.MultiWriter(w, counter{&received}), s)
		got <- w
	}()
	sent := newHashingWriter()
	sendErr := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		src := stream(7, 1<<40)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				sendErr <- c.(closeWriter).CloseWrite()
				return
			default:
			}
			n, _ := io.ReadFull(src, buf)
			sent.Write(buf[:n])
			if _, err := c.Write(buf[:n]); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	sender := func() *api.TCPInfo {
		for _, so := range inspect.Sockets(&inspect.Target{Stack: a}, true) {
			if so.TCP != nil && so.Local.Port == uint16(c.LocalAddr().(*net.TCPAddr).Port) {
				return so.TCP
			}
		}
		t.Fatal("the sender's connection is not in the stack's socket list")
		return nil
	}
	waitFor := func(what string, done func() bool, failed func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !done() {
			if failed() || time.Now().After(deadline) {
				info, _ := json.Marshal(sender())
				t.Fatalf("%s: %d bytes received; the sender: %s", what, received.Load(), info)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	never := func() bool { return false }
	waitFor("the transfer did not start", func() bool { return received.Load() >= 1<<20 }, never)
	if err := a.SetLink(shape.Egress, mustSpec(t, "delay 10ms loss 100%")); err != nil {
		t.Fatal(err)
	}
	waitFor("no retransmission timeout in the blackout", func() bool { return sender().Timeouts >= 2 }, never)
	if err := a.SetLink(shape.Egress, mustSpec(t, "delay 10ms")); err != nil {
		t.Fatal(err)
	}
	from := received.Load()
	waitFor("the transfer did not recover after the blackout",
		func() bool { return received.Load() >= from+more },
		func() bool { return sender().Timeouts >= 6 })
	close(stop)
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	w := <-got
	if w.n != sent.n || w.Sum() != sent.Sum() {
		t.Fatalf("received %d bytes (SHA-256 equal: %v) of %d", w.n, w.Sum() == sent.Sum(), sent.n)
	}
}

// counter counts the bytes written to it.
type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}
