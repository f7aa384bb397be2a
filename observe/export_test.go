package observe

import "time"

// SetSweepIdle sets how long after it starts keeping a connection a hub
// made before the test ends sweeps when no new connections start a sweep.
func SetSweepIdle(t interface{ Cleanup(func()) }, d time.Duration) {
	old := sweepIdle
	sweepIdle = d
	t.Cleanup(func() { sweepIdle = old })
}

// Kept is how many connections the hub keeps a state for.
func (h *Hub) Kept() int {
	n := 0
	h.latest.Range(func(_, _ any) bool { n++; return true })
	return n
}
