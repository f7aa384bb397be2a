package cc

import "fmt"

// Scalable is Scalable TCP (T. Kelly, "Scalable TCP: Improving Performance
// in Highspeed Wide Area Networks", CCR 33(2), 2003): in congestion
// avoidance each acknowledged packet adds A packets to the window, and a
// loss takes B of it away, so the time to recover from a loss does not
// grow with the window. Below 1/A packets, where A per packet is less than
// Reno's 1/cwnd, it grows as Reno (the paper's legacy window, here where
// Linux's scalable puts it: a window of 100 packets): a window of 20 would
// otherwise grow a fifth of a packet per round trip, and random loss holds
// it near nothing.
type Scalable struct {
	A float64 // increase per acknowledged packet (paper: 0.01)
	B float64 // fraction removed on loss (paper: 0.125)

	win window
}

func init() {
	Register("scalable", "Scalable TCP, Kelly 2003", func() Algorithm { return &Scalable{A: 0.01, B: 0.125} })
}

// OnAck implements Algorithm.
func (s *Scalable) OnAck(w *Window, a Ack) {
	left := s.win.slowStart(w, a.Packets)
	if left == 0 || inSlowStart(w) {
		return
	}
	cwnd := s.win.sync(w)
	s.win.set(w, cwnd+max(s.A, 1/cwnd)*float64(left))
}

// OnLoss implements Algorithm.
func (s *Scalable) OnLoss(w *Window) {
	w.Ssthresh = max(int(s.win.sync(w)*(1-s.B)), 2)
}

// OnRTO implements Algorithm.
func (s *Scalable) OnRTO(w *Window) {
	s.OnLoss(w)
	s.win.set(w, 1)
}

// OnRecoveryExit implements Algorithm.
func (s *Scalable) OnRecoveryExit(w *Window) { s.win.sync(w) }

// Info implements Algorithm.
func (s *Scalable) Info() string { return fmt.Sprintf("cwnd:%.2f", s.win.cwnd) }
