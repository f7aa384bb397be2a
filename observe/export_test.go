package observe

import "time"

// SetSweepIdle sets sweepIdle to d for the hubs made until the test ends.
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
