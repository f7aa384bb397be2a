package cc

// Tahoe is 4.3BSD Tahoe's window (Jacobson, "Congestion Avoidance and
// Control", SIGCOMM 1988): slow start and Reno's linear increase, and on
// any loss ssthresh to half the flight and the window back to one packet,
// so the sender slow-starts again instead of staying at half. netstack still
// retransmits the lost segment through its fast recovery; Tahoe's window
// applies when that recovery ends.
type Tahoe struct {
	Reno
}

func init() {
	Register("tahoe", "Tahoe, Jacobson 1988", func() Algorithm { return &Tahoe{Reno: *NewReno5681()} })
}

// OnRecoveryExit implements Algorithm.
func (t *Tahoe) OnRecoveryExit(w *Window) { t.win.set(w, 1) }
