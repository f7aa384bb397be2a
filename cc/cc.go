// Package cc holds ustack's TCP congestion control algorithms. Each file is
// one algorithm, citing its paper or RFC, with its parameters as exported
// fields (tunables); Register makes it selectable by name in every stack
// made afterwards (tcp.cc / --cc / USTACK_CC for a stack, TCP_CONGESTION or
// Conn.SetCongestionControl for a socket). The algorithms run inside
// netstack's TCP sender through the plug point ustack's netstack patch
// 0001-congestion-control-plug-point adds (tcp.CongestionControl): the sender
// calls them on each ACK of new data, on loss, on RTO and when fast recovery
// ends, and uses the window they leave; a rate-based algorithm may also set
// a pacing rate, at which the sender then spaces new data (netstack patch
// 0003-pacing).
//
// Windows are in packets (segments), as netstack keeps them. Algorithms keep
// a fractional window of their own where the published update is
// fractional, and take the sender's window back when the sender changed it
// (fast recovery sets Cwnd = Ssthresh + 3, then Ssthresh).
//
// # ECN and DCTCP
//
// There is no ECN-based algorithm (DCTCP, or classic ECN's reaction to
// ECE) because the pinned netstack's TCP has no ECN at all, so an
// algorithm could never see a congestion mark:
//
//   - it never negotiates ECN: its SYN and SYN-ACK carry neither ECE nor
//     CWR (RFC 3168, section 6.1.1);
//   - it never sends ECT: setting IP_TOS or IPV6_TCLASS clears the two ECN
//     bits ("ECN is not currently supported", gVisor issue 995);
//   - a received segment keeps nothing of its IP header's ECN field, so a
//     receiver cannot see CE, and it never sets ECE; the sender never reads
//     ECE and never sends CWR (header.TCPFlagEce and TCPFlagCwr are
//     defined and only GRO looks at CWR);
//   - the plug point has no event for a mark, and package shape's link
//     emulator does not mark (RED and CoDel drop).
//
// DCTCP needs all of these: negotiation, ECT(0) on data, CE carried to the
// receiver, the receiver's ECE echo of each CE state change with an
// immediate ACK (RFC 8257, section 3.2), an OnECE event with the bytes
// marked per window, and a marking queue (a threshold K on the
// instantaneous queue) in the emulator.
package cc

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Algorithm is what an algorithm implements: netstack's plug point.
type Algorithm = tcp.CongestionControl

// Window and Ack are the plug point's event data.
type (
	Window = tcp.CCWindow
	Ack    = tcp.CCAck
)

var registry struct {
	mu    sync.Mutex
	about map[string]string
}

// Register makes newAlg available as name, with a one-line description.
func Register(name, about string, newAlg func() Algorithm) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.about == nil {
		registry.about = map[string]string{}
	}
	registry.about[name] = about
	tcp.RegisterCongestionControl(name, newAlg)
}

// Names lists the registered algorithms, sorted.
func Names() []string {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	var names []string
	for n := range registry.about {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// About is name's description ("" when it is not registered).
func About(name string) string {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return registry.about[name]
}

// Check returns an error naming the available algorithms if name is not one.
func Check(name string) error {
	if About(name) != "" {
		return nil
	}
	return fmt.Errorf("unknown congestion control %q (available: %s)", name, strings.Join(Names(), ", "))
}

// window is a fractional congestion window that follows the sender's.
type window struct {
	cwnd float64
}

// sync takes the sender's window when it differs from ours (the sender
// changes it in fast recovery) and returns it.
func (f *window) sync(w *Window) float64 {
	if int(f.cwnd) != w.Cwnd {
		f.cwnd = float64(w.Cwnd)
	}
	return f.cwnd
}

// set stores a new window, at least one packet.
func (f *window) set(w *Window, cwnd float64) {
	f.cwnd = max(cwnd, 1)
	w.Cwnd = int(f.cwnd)
}

// slowStart grows the window by one packet per packet acknowledged up to
// ssthresh (RFC 5681, section 3.1) and returns the packets left over for
// congestion avoidance.
func (f *window) slowStart(w *Window, packets int) int {
	cwnd := f.sync(w)
	if cwnd >= float64(w.Ssthresh) {
		return packets
	}
	room := float64(w.Ssthresh) - cwnd
	if float64(packets) <= room {
		f.set(w, cwnd+float64(packets))
		return 0
	}
	f.set(w, float64(w.Ssthresh))
	return packets - int(room)
}

// halve is the classic multiplicative decrease: ssthresh to half the flight
// (RFC 5681, equation 4), at least two packets.
func halve(w *Window) {
	w.Ssthresh = max(w.Inflight/2, 2)
}

// inSlowStart reports whether the sender is below ssthresh.
func inSlowStart(w *Window) bool { return w.Cwnd < w.Ssthresh }
