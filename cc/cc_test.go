package cc

import (
	"math"
	"strings"
	"testing"
	"time"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %v, want %v (±%v)", what, got, want, tol)
	}
}

func TestRegistry(t *testing.T) {
	names := Names()
	for _, want := range []string{"reno", "newreno", "cubic", "tahoe", "scalable", "highspeed", "hybla", "vegas", "westwood", "htcp", "bic", "veno", "illinois", "compound", "lp", "bbr", "yeah"} {
		if About(want) == "" {
			t.Errorf("%s is not registered (have %v)", want, names)
		}
	}
	if err := Check("nosuch"); err == nil || !strings.Contains(err.Error(), "reno") {
		t.Errorf("Check(nosuch) = %v, want an error listing the algorithms", err)
	}
}

// TestRenoFamily: RFC 5681's slow start, one packet per window in
// congestion avoidance, half the flight on loss, one packet after a
// timeout; RFC 6582's and Tahoe's ends of recovery.
func TestRenoFamily(t *testing.T) {
	r := NewReno5681()
	w := &Window{Cwnd: 10, Ssthresh: 20}
	r.OnAck(w, Ack{Packets: 4})
	if w.Cwnd != 14 {
		t.Errorf("slow start: cwnd %d after 4 acked from 10, want 14", w.Cwnd)
	}
	r.OnAck(w, Ack{Packets: 10}) // 6 to reach ssthresh, 4 in avoidance: +4/20
	near(t, "cwnd at ssthresh + 4 packets", r.win.cwnd, 20.2, 1e-9)
	w = &Window{Cwnd: 20, Ssthresh: 20}
	r = NewReno5681()
	r.OnAck(w, Ack{Packets: 20})
	if w.Cwnd != 21 {
		t.Errorf("a window of acks in avoidance: cwnd %d, want 21", w.Cwnd)
	}
	w.Inflight = 30
	r.OnLoss(w)
	if w.Ssthresh != 15 {
		t.Errorf("loss with 30 in flight: ssthresh %d, want 15", w.Ssthresh)
	}
	r.OnRTO(w)
	if w.Cwnd != 1 || w.Ssthresh != 15 {
		t.Errorf("RTO: cwnd %d ssthresh %d, want 1 and 15", w.Cwnd, w.Ssthresh)
	}

	n := &NewReno{Reno: *NewReno5681()}
	w = &Window{Cwnd: 15, Ssthresh: 15, Inflight: 5}
	n.OnRecoveryExit(w)
	if w.Cwnd != 6 {
		t.Errorf("newreno recovery exit with 5 in flight: cwnd %d, want min(15, 5+1) = 6", w.Cwnd)
	}
	tahoe := &Tahoe{Reno: *NewReno5681()}
	tahoe.OnRecoveryExit(w)
	if w.Cwnd != 1 {
		t.Errorf("tahoe recovery exit: cwnd %d, want 1", w.Cwnd)
	}
}

// TestCubic follows RFC 9438: ssthresh = beta*cwnd, K = cbrt((W_max -
// cwnd_epoch)/C), the window reaching W_max at K when ACKs come at the
// window's pace, fast convergence lowering W_max, and no window below one.
func TestCubic(t *testing.T) {
	c := NewCubic()
	w := &Window{Cwnd: 100, Ssthresh: 1 << 30, Inflight: 100}
	c.OnLoss(w)
	if w.Ssthresh != 70 {
		t.Fatalf("ssthresh after loss at 100: %d, want 70", w.Ssthresh)
	}
	w.Cwnd = w.Ssthresh // the sender, when recovery ends
	c.OnRecoveryExit(w)
	const rtt = 100 * time.Millisecond
	w.SRTT = rtt
	w.Now = time.Second
	c.OnAck(w, Ack{Packets: 1, RTT: rtt})
	near(t, "K", c.K(), math.Cbrt(30/0.4), 1e-9)
	near(t, "W_cubic(0)", c.W(0), 70, 1e-9)
	near(t, "W_cubic(K)", c.W(c.K()), 100, 1e-9)
	epoch := w.Now
	for w.Now < epoch+time.Duration(c.K()*float64(time.Second)) {
		w.Now += rtt / time.Duration(w.Cwnd)
		c.OnAck(w, Ack{Packets: 1, RTT: rtt})
	}
	near(t, "cwnd at K", c.win.cwnd, 100, 2)
	// Past K the window grows beyond W_max (convex region).
	for w.Now < epoch+time.Duration((c.K()+2)*float64(time.Second)) {
		w.Now += rtt / time.Duration(w.Cwnd)
		c.OnAck(w, Ack{Packets: 1, RTT: rtt})
	}
	near(t, "cwnd at K+2s", c.win.cwnd, c.W(c.K()+2+rtt.Seconds()), 3)

	c.wMax = 100
	w.Cwnd = 90
	c.OnLoss(w) // before reaching the last W_max: fast convergence
	near(t, "W_max after a loss below the last one", c.wMax, 90*1.7/2, 1e-9)
	for range 10 {
		w.Cwnd = 1
		c.OnRTO(w)
	}
	if w.Cwnd < 1 || w.Ssthresh < 2 {
		t.Errorf("after repeated timeouts: cwnd %d ssthresh %d, want at least 1 and 2", w.Cwnd, w.Ssthresh)
	}
}

func TestScalable(t *testing.T) {
	s := &Scalable{A: 0.01, B: 0.125}
	w := &Window{Cwnd: 100, Ssthresh: 50}
	s.OnAck(w, Ack{Packets: 100})
	if w.Cwnd != 101 {
		t.Errorf("100 packets acked at 100: cwnd %d, want 101 (0.01 each)", w.Cwnd)
	}
	s.OnLoss(w)
	if w.Ssthresh != 88 {
		t.Errorf("loss at 101: ssthresh %d, want 101*0.875 = 88", w.Ssthresh)
	}
	// Below 1/A = 100 packets it grows as Reno: a window of acks adds one.
	s = &Scalable{A: 0.01, B: 0.125}
	w = &Window{Cwnd: 20, Ssthresh: 10}
	s.OnAck(w, Ack{Packets: 20})
	if w.Cwnd != 21 {
		t.Errorf("20 packets acked at 20: cwnd %d, want 21 (Reno's 1/cwnd each, more than 0.01)", w.Cwnd)
	}
}

// TestHighSpeed checks RFC 3649's response function: Reno up to 38
// packets, b(83000) = 0.1 and a(w) = w^2 p(w) 2b/(2-b) with p(83000) = 1e-7,
// and rows of the RFC's table (section 5: w, a(w), b(w)).
func TestHighSpeed(t *testing.T) {
	h := NewHighSpeed()
	near(t, "a(38)", h.A(38), 1, 1e-9)
	near(t, "b(38)", h.B(38), 0.5, 1e-9)
	near(t, "b(83000)", h.B(83000), 0.1, 1e-9)
	near(t, "p(83000)", h.P(83000), 1e-7, 1e-12)
	near(t, "a(83000)", h.A(83000), 83000*83000*1e-7*0.2/1.9, 1e-6)
	for _, row := range []struct{ w, a, b float64 }{
		{118, 2, 0.44}, {221, 3, 0.41}, {347, 4, 0.38}, {495, 5, 0.37},
	} {
		near(t, "a(w) rounded", math.Round(h.A(row.w)), row.a, 0)
		near(t, "b(w)", h.B(row.w), row.b, 0.006)
	}
	w := &Window{Cwnd: 1000, Ssthresh: 10}
	h.OnAck(w, Ack{Packets: 1000})
	near(t, "cwnd after a window at 1000", h.win.cwnd, 1000+h.A(1000), 1e-9)
}

// TestHybla: rho = RTT/RTT0; 2^rho - 1 per packet in slow start, rho^2/cwnd
// in congestion avoidance.
func TestHybla(t *testing.T) {
	h := &Hybla{RTT0: 25 * time.Millisecond}
	near(t, "rho(100ms)", h.Rho(100*time.Millisecond), 4, 1e-9)
	near(t, "rho(10ms)", h.Rho(10*time.Millisecond), 1, 1e-9)
	w := &Window{Cwnd: 2, Ssthresh: 1000, SRTT: 150 * time.Millisecond}
	h.OnAck(w, Ack{Packets: 1, RTT: 100 * time.Millisecond}) // rho from the least RTT, not SRTT
	if w.Cwnd != 17 {
		t.Errorf("slow start at rho 4: cwnd %d after one packet from 2, want 2+15", w.Cwnd)
	}
	w = &Window{Cwnd: 32, Ssthresh: 16, SRTT: 100 * time.Millisecond}
	h.win = window{}
	h.OnAck(w, Ack{Packets: 2, RTT: 300 * time.Millisecond}) // a larger RTT leaves rho at 4
	near(t, "avoidance at rho 4", h.win.cwnd, 32+2*16.0/32, 1e-9)
}

// TestVegas: in congestion avoidance, diff = (cwnd/BaseRTT - cwnd/RTT) *
// BaseRTT once per round; add one below alpha, remove one above beta.
func TestVegas(t *testing.T) {
	near(t, "Diff(20, 100ms, 150ms)", Diff(20, 100*time.Millisecond, 150*time.Millisecond), 20*(1-100.0/150), 1e-9)
	for _, tc := range []struct {
		rtt  time.Duration
		want int
	}{{100 * time.Millisecond, 21}, {150 * time.Millisecond, 19}, {115 * time.Millisecond, 20}} {
		v := &Vegas{Alpha: 2, Beta: 4, Gamma: 1}
		w := &Window{Cwnd: 20, Ssthresh: 10, MSS: 1000, Inflight: 20}
		v.OnAck(w, Ack{Packets: 1, RTT: 100 * time.Millisecond, Delivered: 1000}) // BaseRTT; the first round begins
		v.roundMin = 0
		v.OnAck(w, Ack{Packets: 1, RTT: tc.rtt, Delivered: 21000}) // the round's data is acknowledged
		if w.Cwnd != tc.want {
			t.Errorf("RTT %v over base 100ms (diff %.2f): cwnd %d, want %d", tc.rtt, v.diff, w.Cwnd, tc.want)
		}
	}
}

// TestVegasSlowStart: the paper's slow start grows the window in one round
// and holds it in the next; when the RTTs of the held window's data show
// more than Gamma packets queued, slow start ends with the window that
// queues one (held * BaseRTT / RTT + 1).
func TestVegasSlowStart(t *testing.T) {
	v := &Vegas{Alpha: 2, Beta: 4, Gamma: 1}
	w := &Window{Cwnd: 10, Ssthresh: 1 << 20, MSS: 1000}
	var delivered uint64
	// ack acknowledges one packet; the sender keeps a full window out.
	ack := func(rtt time.Duration) {
		delivered += uint64(w.MSS)
		w.Inflight = w.Cwnd - 1
		v.OnAck(w, Ack{Packets: 1, Bytes: w.MSS, RTT: rtt, Delivered: delivered})
	}
	// round acknowledges the rest of a round's data.
	round := func(rtt time.Duration) {
		for end := v.roundEnd; v.roundEnd == end; {
			ack(rtt)
		}
	}
	base := 100 * time.Millisecond
	ack(base) // the first ACK begins the first round
	round(base)
	// Each ACK but the one ending the round adds a packet.
	if w.Cwnd != 19 {
		t.Fatalf("after a growing round from 10: cwnd %d, want 19", w.Cwnd)
	}
	round(base)
	if w.Cwnd != 19 {
		t.Fatalf("after a holding round: cwnd %d, want 19 still", w.Cwnd)
	}
	round(150 * time.Millisecond) // the held 19 packets queue 6.3
	if w.Cwnd != 13 || w.Ssthresh != 13 {
		t.Errorf("slow start's end: cwnd %d ssthresh %d, want 19*100/150+1 = 13 for both", w.Cwnd, w.Ssthresh)
	}
}

// TestWestwood: ssthresh = BWE * RTTmin / MSS after a loss.
func TestWestwood(t *testing.T) {
	ww := &Westwood{Gain: 7.0 / 8, reno: *NewReno5681()}
	w := &Window{Cwnd: 100, Ssthresh: 10, MSS: 1000, SRTT: 50 * time.Millisecond, Now: time.Second}
	ww.OnAck(w, Ack{Packets: 1, RTT: 50 * time.Millisecond, DeliveryRate: 1e6})
	w.Now += time.Second
	ww.OnAck(w, Ack{Packets: 1, RTT: 60 * time.Millisecond, DeliveryRate: 2e6})
	near(t, "BWE", ww.bwe, 7.0/8*1e6+1.0/8*2e6, 1e-6)
	ww.OnLoss(w)
	if want := int(ww.bwe * 0.05 / 1000); w.Ssthresh != want {
		t.Errorf("ssthresh %d, want BWE*RTTmin/MSS = %d", w.Ssthresh, want)
	}
}

// TestHTCP: alpha(D) and beta = RTTmin/RTTmax within [0.5, 0.8].
func TestHTCP(t *testing.T) {
	h := &HTCP{DeltaL: time.Second, BetaMin: 0.5, BetaMax: 0.8}
	near(t, "alpha(0.5s)", h.Alpha(500*time.Millisecond, 0.5), 1, 1e-9)
	near(t, "alpha(3s)", h.Alpha(3*time.Second, 0.5), 2*0.5*(1+10*2+1), 1e-9)
	near(t, "beta(100ms, 150ms)", h.Beta(100*time.Millisecond, 150*time.Millisecond), 100.0/150, 1e-9)
	near(t, "beta(100ms, 110ms)", h.Beta(100*time.Millisecond, 110*time.Millisecond), 0.8, 1e-9)
	near(t, "beta(100ms, 400ms)", h.Beta(100*time.Millisecond, 400*time.Millisecond), 0.5, 1e-9)
}

// TestBIC: binary search toward W_max, clamped to [SMin, SMax], then max
// probing.
func TestBIC(t *testing.T) {
	b := &BIC{Beta: 0.8, SMax: 32, SMin: 0.01, LowWindow: 14, wMax: 100}
	near(t, "increase at 50", b.Increase(50), 25, 1e-9)
	near(t, "increase at 20", b.Increase(20), 32, 1e-9)
	near(t, "increase at 99.995", b.Increase(99.995), 0.01, 1e-9)
	near(t, "increase at 110", b.Increase(110), 10, 1e-9)
	w := &Window{Cwnd: 200, Ssthresh: 10}
	b.OnLoss(w)
	if w.Ssthresh != 160 || b.wMax != 200 {
		t.Errorf("loss at 200: ssthresh %d W_max %v, want 160 and 200", w.Ssthresh, b.wMax)
	}
}

// TestVeno: Reno's growth and a 4/5 backoff below Beta queued packets,
// half the growth and a halving at or above it.
func TestVeno(t *testing.T) {
	for _, tc := range []struct {
		rtt      time.Duration
		grow     float64
		ssthresh int
	}{{100 * time.Millisecond, 1, 80}, {200 * time.Millisecond, 0.5, 50}} {
		v := &Veno{Beta: 3}
		w := &Window{Cwnd: 100, Ssthresh: 10}
		v.OnAck(w, Ack{Packets: 0, RTT: 100 * time.Millisecond})
		v.OnAck(w, Ack{Packets: 100, RTT: tc.rtt})
		near(t, "growth per window", v.win.cwnd-100, tc.grow, 1e-9)
		w.Cwnd = 100
		v.OnLoss(w)
		if w.Ssthresh != tc.ssthresh {
			t.Errorf("RTT %v (queued %.1f): ssthresh %d, want %d", tc.rtt, v.n, w.Ssthresh, tc.ssthresh)
		}
	}
}

// TestIllinois: alpha from AlphaMax at no queueing delay to AlphaMin at the
// largest; beta from BetaMin to BetaMax, linear between d2 and d3.
func TestIllinois(t *testing.T) {
	il := &Illinois{AlphaMin: 0.3, AlphaMax: 10, BetaMin: 0.125, BetaMax: 0.5}
	dm := 100 * time.Millisecond
	near(t, "alpha(0)", il.Alpha(0, dm), 10, 1e-9)
	near(t, "alpha(dm)", il.Alpha(dm, dm), 0.3, 1e-9)
	near(t, "beta(5ms)", il.Beta(5*time.Millisecond, dm), 0.125, 1e-9)
	near(t, "beta(90ms)", il.Beta(90*time.Millisecond, dm), 0.5, 1e-9)
	near(t, "beta(45ms)", il.Beta(45*time.Millisecond, dm), 0.125+(0.5-0.125)*(45.0-10)/(80-10), 1e-9)
}

// TestCompound: dwnd grows by Alpha*win^K - 1 per round below Gamma queued
// packets and shrinks by Zeta*diff above; a loss leaves (1-Beta) of the
// window.
func TestCompound(t *testing.T) {
	c := &Compound{Alpha: 1.0 / 8, K: 0.75, Beta: 0.5, Zeta: 1, Gamma: 30}
	near(t, "step at 1000, no queue", c.DwndStep(1000, 0, 0), 1.0/8*math.Pow(1000, 0.75)-1, 1e-9)
	near(t, "step at 1000, 40 queued", c.DwndStep(1000, 40, 100), -40, 1e-9)
	near(t, "step at 1000, 40 queued, dwnd 10", c.DwndStep(1000, 40, 10), -10, 1e-9)
	w := &Window{Cwnd: 1000, Ssthresh: 10, SRTT: 100 * time.Millisecond, Now: time.Second}
	c.OnAck(w, Ack{Packets: 1, RTT: 100 * time.Millisecond})
	near(t, "dwnd after a round without queueing", c.dwnd, 1.0/8*math.Pow(1000, 0.75)-1, 1e-9)
	win := float64(w.Cwnd)
	c.OnLoss(w)
	if want := int(win / 2); w.Ssthresh != want {
		t.Errorf("ssthresh after loss at %v: %d, want %d", win, w.Ssthresh, want)
	}
}

// TestLP: an early indication above min + Delta*(max-min) halves the window
// and starts the inference time; a second within it takes the window to
// one packet; no growth inside it.
func TestLP(t *testing.T) {
	l := &LP{Delta: 0.15, Inference: 3, reno: *NewReno5681()}
	ms := time.Millisecond
	if l.Early(110*ms, 100*ms, 200*ms) || !l.Early(120*ms, 100*ms, 200*ms) {
		t.Error("Early: want the threshold at 100ms + 0.15*(200ms-100ms) = 115ms")
	}
	w := &Window{Cwnd: 40, Ssthresh: 20, SRTT: 100 * ms, Now: time.Second}
	l.OnAck(w, Ack{Packets: 1, RTT: 100 * ms})
	l.OnAck(w, Ack{Packets: 1, RTT: 1000 * ms}) // the largest RTT; not yet an indication (smoothed 212.5ms < 235ms)
	w.Cwnd = 40
	l.reno.win = window{}
	l.smooth = 500 * ms
	w.Now += ms
	l.OnAck(w, Ack{Packets: 1, RTT: 500 * ms})
	if w.Cwnd != 20 {
		t.Fatalf("first early indication at 40: cwnd %d, want 20", w.Cwnd)
	}
	w.Now += ms
	l.OnAck(w, Ack{Packets: 1, RTT: 100 * ms}) // inside the inference time, no indication: no growth
	if w.Cwnd != 20 {
		t.Errorf("inside the inference time: cwnd %d, want 20 (no growth)", w.Cwnd)
	}
	l.smooth = 900 * ms
	w.Now += ms
	l.OnAck(w, Ack{Packets: 1, RTT: 900 * ms})
	if w.Cwnd != 1 {
		t.Errorf("second indication inside the inference time: cwnd %d, want 1", w.Cwnd)
	}
}

// TestBBR: the window is cwnd_gain * BtlBw * RTprop, BtlBw the largest
// delivery rate of the last rounds; startup ends after three rounds without
// 25 % more bandwidth, and drain ends at one BDP in flight.
func TestBBR(t *testing.T) {
	b := NewBBR()
	const mss = 1000
	rtt := 100 * time.Millisecond
	w := &Window{Cwnd: 10, Ssthresh: 1 << 30, MSS: mss, SRTT: rtt, Inflight: 300}
	// 1 MB/s at 100 ms: a BDP of 100 packets.
	for i := 0; i < 6; i++ {
		w.Now += rtt
		b.OnAck(w, Ack{Packets: 1, RTT: rtt, DeliveryRate: 1e6})
	}
	near(t, "BtlBw", b.BtlBw(), 1e6, 0)
	near(t, "BDP in packets", b.Target(1, mss), 100, 1e-9)
	if b.state != "drain" {
		t.Fatalf("after rounds of steady bandwidth: state %s, want drain", b.state)
	}
	w.Inflight = 100
	w.Now += rtt
	b.OnAck(w, Ack{Packets: 1, RTT: rtt, DeliveryRate: 1e6})
	if b.state != "probe_bw" {
		t.Fatalf("at one BDP in flight: state %s, want probe_bw", b.state)
	}
	w.Cwnd = 500
	b.win = window{}
	b.OnAck(w, Ack{Packets: 1, RTT: rtt, DeliveryRate: 1e6})
	if w.Cwnd != 200 {
		t.Errorf("probe_bw window: %d, want cwnd_gain 2 * BDP 100 = 200", w.Cwnd)
	}
	near(t, "pacing rate", w.PacingRate, b.pacingGain*1e6, 1e-6)

	// A standing queue (300 ms samples) for longer than RTpropWindow: the
	// expired RTprop takes the inflated sample, ProbeRTT holds four
	// packets, the drained queue's samples bring RTprop back, and after
	// 200 ms at four in flight the flow returns to ProbeBW and its window.
	w.Inflight = 200
	for end := w.Now + b.RTpropWindow; w.Now <= end; w.Now += rtt {
		b.OnAck(w, Ack{Packets: 1, RTT: 3 * rtt, DeliveryRate: 1e6})
	}
	if w.Cwnd != 200 || b.state != "probe_bw" {
		t.Fatalf("a queue for RTpropWindow: cwnd %d in %s, want 200 in probe_bw", w.Cwnd, b.state)
	}
	w.Now += rtt
	b.OnAck(w, Ack{Packets: 1, RTT: 3 * rtt, DeliveryRate: 1e6})
	if w.Cwnd != 4 || b.state != "probe_rtt" {
		t.Fatalf("RTprop expired: cwnd %d in %s, want 4 in probe_rtt", w.Cwnd, b.state)
	}
	w.Inflight = 4
	for i := 0; i < 2; i++ {
		w.Now += rtt
		b.OnAck(w, Ack{Packets: 1, RTT: rtt, DeliveryRate: 1e6})
	}
	if b.state != "probe_rtt" || b.rtprop != rtt {
		t.Fatalf("100 ms after the flight reached four: %s with RTprop %v, want probe_rtt, %v", b.state, b.rtprop, rtt)
	}
	w.Now += rtt
	b.OnAck(w, Ack{Packets: 1, RTT: rtt, DeliveryRate: 1e6})
	if w.Cwnd != 200 || b.state != "probe_bw" {
		t.Errorf("after ProbeRTT: cwnd %d in %s, want 200 (2 * BDP of RTprop %v) in probe_bw", w.Cwnd, b.state, b.rtprop)
	}
}

// TestYeAH: Scalable growth in fast mode, Reno's in slow mode; a round
// whose queue estimate cwnd*(RTT-BaseRTT)/RTT exceeds 80 packets removes it
// (at most half the window); a loss removes the last queue estimate,
// between 1/8 and 1/2 of the window, or half after 16 slow rounds.
func TestYeAH(t *testing.T) {
	ms := time.Millisecond
	y := NewYeAH()
	near(t, "Queue(500, 100ms, 125ms)", y.Queue(500, 100*ms, 125*ms), 100, 1e-9)

	// Fast mode: at 200 packets, 100 acknowledged add one (1 per min(200, 100)).
	w := &Window{Cwnd: 200, Ssthresh: 100, SRTT: 100 * ms}
	y.OnAck(w, Ack{Packets: 1, RTT: 100 * ms}) // BaseRTT; the first round: no queue
	y.win, w.Cwnd = window{}, 200
	y.OnAck(w, Ack{Packets: 100, RTT: 100 * ms})
	if w.Cwnd != 201 || y.slowRuns != 0 {
		t.Errorf("fast mode, 100 acked at 200: cwnd %d (slow rounds %d), want 201", w.Cwnd, y.slowRuns)
	}

	// A round at 125 ms over a base of 100 ms with 500 packets: Q = 100 > 80
	// and 25 ms > 100/8 ms; decongestion removes 100.
	w = &Window{Cwnd: 500, Ssthresh: 100, SRTT: 100 * ms, Now: time.Second}
	y.win, y.roundMin = window{}, 0
	y.OnAck(w, Ack{Packets: 1, RTT: 125 * ms})
	if w.Cwnd != 400 || w.Ssthresh != 400 || y.slowRuns != 1 {
		t.Errorf("decongestion at 500 with Q 100: cwnd %d ssthresh %d slow rounds %d, want 400 400 1", w.Cwnd, w.Ssthresh, y.slowRuns)
	}
	near(t, "renoCount after the first slow round", y.renoCount, 200, 1e-9)
	// Slow mode grows as Reno: 400 acked at 400 add one.
	w.Ssthresh = 100
	y.OnAck(w, Ack{Packets: 400})
	if w.Cwnd != 401 {
		t.Errorf("slow mode, 400 acked at 400: cwnd %d, want 401", w.Cwnd)
	}
	// A loss now removes the last queue estimate, 100 (and a little: the
	// window was 500.01 when it was made).
	w.Cwnd = 400
	y.win = window{}
	y.OnLoss(w)
	near(t, "ssthresh after a loss at 400 with Q 100", float64(w.Ssthresh), 300, 1)
	// With a small queue the loss still removes an eighth.
	y.queue = 3
	y.OnLoss(w)
	if w.Ssthresh != 350 {
		t.Errorf("loss at 400 with Q 3: ssthresh %d, want 400-400/8 = 350", w.Ssthresh)
	}
	// After Rho slow rounds it competes with Reno: half.
	y.slowRuns = 16
	y.OnLoss(w)
	if w.Ssthresh != 200 {
		t.Errorf("loss after 16 slow rounds: ssthresh %d, want 200", w.Ssthresh)
	}
	// A round at the base RTT is fast: back to Scalable growth.
	w.Now += time.Second
	y.OnAck(w, Ack{Packets: 1, RTT: 100 * ms})
	if y.slowRuns != 0 || y.fastCount != 1 {
		t.Errorf("round at the base RTT: slow rounds %d fast count %d, want 0 and 1", y.slowRuns, y.fastCount)
	}
}
