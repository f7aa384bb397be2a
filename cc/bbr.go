package cc

import (
	"fmt"
	"math"
	"time"
)

// BBR is BBR v1's model and window (N. Cardwell, Y. Cheng, C. S. Gunn,
// S. H. Yeganeh, V. Jacobson, "BBR: Congestion-Based Congestion Control",
// ACM Queue 14(5), 2016; draft-cardwell-iccrg-bbr-congestion-control-00).
// BtlBw is the largest delivery rate of the last BwRounds rounds, RTprop
// the least RTT of the last RTpropWindow; the pacing rate is pacing_gain *
// BtlBw and the window cwnd_gain * BtlBw * RTprop. States: Startup (gain
// 2/ln 2 until the bandwidth grew less than 25 % in three rounds), Drain
// (its inverse until the flight is one BDP), ProbeBW (gains cycling 1.25,
// 0.75, then 1 for six rounds) and ProbeRTT (four packets in flight for
// 200 ms when RTprop has not been renewed for RTpropWindow, so that the
// queue drains and the next samples renew it). Losses do not change the
// model. The sender paces new data at the pacing rate
// (netstack/patches/0003-pacing.patch); before the first bandwidth sample
// (the first round) it does not pace.
type BBR struct {
	BwRounds     int           // rounds of the bandwidth max filter (10)
	RTpropWindow time.Duration // RTprop's min filter window (10 s)
	CwndGain     float64       // window gain in ProbeBW (2)

	state      string
	bws        []float64 // per-round maxima, newest last
	rtprop     time.Duration
	rtpropAt   time.Duration
	roundEnd   time.Duration
	fullBw     float64
	fullRounds int
	cycle      int
	probeEnd   time.Duration // ProbeRTT's end, once the flight is down to four (0 before)
	probeFrom  string        // the state ProbeRTT interrupted
	priorCwnd  float64       // the window ProbeRTT interrupted
	pacingGain float64
	cwndGain   float64
	win        window
}

var bbrCycle = []float64{1.25, 0.75, 1, 1, 1, 1, 1, 1}

// bbrHighGain is Startup's pacing and window gain, 2/ln 2; Drain paces at
// its inverse.
const bbrHighGain = 2 / math.Ln2

func init() {
	Register("bbr", "BBR v1, Cardwell et al. 2016", func() Algorithm { return NewBBR() })
}

// NewBBR is BBR with the paper's parameters.
func NewBBR() *BBR {
	return &BBR{BwRounds: 10, RTpropWindow: 10 * time.Second, CwndGain: 2, state: "startup", pacingGain: bbrHighGain, cwndGain: bbrHighGain}
}

// BtlBw is the bottleneck bandwidth estimate in bytes per second.
func (b *BBR) BtlBw() float64 {
	m := 0.0
	for _, v := range b.bws {
		m = max(m, v)
	}
	return m
}

// Target is the window in packets for gain: gain * BtlBw * RTprop / MSS,
// at least four packets.
func (b *BBR) Target(gain float64, mss int) float64 {
	if b.rtprop == 0 || mss == 0 || b.BtlBw() == 0 {
		return 0
	}
	return max(gain*b.BtlBw()*b.rtprop.Seconds()/float64(mss), 4)
}

// OnAck implements Algorithm.
func (b *BBR) OnAck(w *Window, a Ack) {
	// The filter's expiry is judged before this sample renews it: an
	// expired RTprop takes the sample, queue and all, and only ProbeRTT's
	// drained queue brings it back down. Judged after, as once here, the
	// renewal hid the expiry, ProbeRTT never ran, and every RTpropWindow
	// the estimate (and so the window) took in the standing queue: two
	// flows on a deep buffer ratcheted up to three BDPs of it in 20 s.
	expired := b.rtprop > 0 && w.Now-b.rtpropAt > b.RTpropWindow
	if a.RTT > 0 && (b.rtprop == 0 || a.RTT <= b.rtprop || expired) {
		b.rtprop, b.rtpropAt = a.RTT, w.Now
	}
	if expired && b.state != "probe_rtt" {
		b.probeFrom, b.priorCwnd = b.state, b.win.sync(w)
		b.state, b.probeEnd, b.pacingGain, b.cwndGain = "probe_rtt", 0, 1, 1
	}
	if b.state == "probe_rtt" {
		b.probeRTT(w)
	}
	if len(b.bws) == 0 {
		b.bws = append(b.bws, 0)
	}
	b.bws[len(b.bws)-1] = max(b.bws[len(b.bws)-1], a.DeliveryRate)
	if w.Now >= b.roundEnd && w.SRTT > 0 {
		b.round(w)
	}
	cwnd := b.win.sync(w)
	target := b.Target(b.cwndGain, w.MSS)
	switch {
	case b.state == "probe_rtt":
		b.win.set(w, 4)
	case target == 0 || b.state == "startup" && cwnd < target:
		// No model yet, or growing toward it: as slow start.
		b.win.set(w, cwnd+float64(a.Packets))
	default:
		b.win.set(w, min(cwnd+float64(a.Packets), target))
	}
	w.Ssthresh = math.MaxInt32
	w.PacingRate = b.pacingRate(w.MSS)
}

// pacingRate is pacing_gain * BtlBw, but at least four packets per RTprop
// (ProbeRTT's window): delivery-rate samples taken across a loss recovery
// can be tiny, and a pacing rate made of them would hold the flow to a
// trickle for the ten rounds they stay in the filter.
func (b *BBR) pacingRate(mss int) float64 {
	r := b.pacingGain * b.BtlBw()
	if r == 0 || b.rtprop == 0 {
		return r
	}
	return max(r, 4*float64(mss)/b.rtprop.Seconds())
}

// round runs once per round trip: filters and state changes.
func (b *BBR) round(w *Window) {
	b.roundEnd = w.Now + w.SRTT
	bw := b.BtlBw()
	b.bws = append(b.bws, 0)
	if len(b.bws) > b.BwRounds {
		b.bws = b.bws[len(b.bws)-b.BwRounds:]
	}
	switch b.state {
	case "startup":
		if bw >= b.fullBw*1.25 {
			b.fullBw, b.fullRounds = bw, 0
		} else if b.fullRounds++; b.fullRounds >= 3 {
			b.state, b.pacingGain, b.cwndGain = "drain", 1/bbrHighGain, bbrHighGain
		}
	case "drain":
		if float64(w.Inflight) <= b.Target(1, w.MSS) {
			b.state, b.cycle, b.cwndGain = "probe_bw", 0, b.CwndGain
			b.pacingGain = bbrCycle[0]
		}
	case "probe_bw":
		b.cycle = (b.cycle + 1) % len(bbrCycle)
		b.pacingGain = bbrCycle[b.cycle]
	}
}

// probeRTT times ProbeRTT: 200 ms from when the flight is down to four
// packets; then RTprop counts as renewed (its samples meanwhile were taken
// at the drained queue) and the flow goes back to the state and the window
// it left, as Linux's bbr_check_probe_rtt_done and bbr_restore_cwnd.
func (b *BBR) probeRTT(w *Window) {
	if b.probeEnd == 0 {
		if w.Inflight <= 4 {
			b.probeEnd = w.Now + 200*time.Millisecond
		}
		return
	}
	if w.Now < b.probeEnd {
		return
	}
	b.rtpropAt = w.Now
	if b.probeFrom == "startup" {
		b.state, b.pacingGain, b.cwndGain = "startup", bbrHighGain, bbrHighGain
	} else {
		b.state, b.cycle, b.pacingGain, b.cwndGain = "probe_bw", 0, bbrCycle[0], b.CwndGain
	}
	b.win.set(w, max(b.win.sync(w), b.priorCwnd))
}

// OnLoss implements Algorithm: BBR v1 keeps its model, and the flight in
// loss recovery is one BDP of the model (ssthresh + 3 in this sender, which
// keeps that much in flight until every loss is repaired; Linux's BBR
// conserves packets for a round instead). The full window, cwnd_gain BDPs,
// kept through a recovery overflowed a shallow buffer until retransmissions
// were lost so often that netstack gave the connection up; a window of one
// or two packets, what a loss just after a timeout finds, held the flow for
// as long as the recovery lasted.
func (b *BBR) OnLoss(w *Window) { w.Ssthresh = max(int(b.Target(1, w.MSS)), 4) }

// OnRTO implements Algorithm.
func (b *BBR) OnRTO(w *Window) {
	w.Ssthresh = max(int(b.Target(1, w.MSS)), 4)
	b.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm: back to the model's window.
func (b *BBR) OnRecoveryExit(w *Window) {
	if t := b.Target(b.cwndGain, w.MSS); t > 0 {
		b.win.set(w, t)
	}
}

// Info implements Algorithm, as Linux's ss shows bbr.
func (b *BBR) Info() string {
	return fmt.Sprintf("bw:%.0fbps mrtt:%.3f pacing_gain:%.2f cwnd_gain:%.2f state:%s",
		b.BtlBw()*8, float64(b.rtprop)/1e6, b.pacingGain, b.cwndGain, b.state)
}
