package cli

import (
	"runtime"
	"testing"
)

// TestSetProcs: --procs sets GOMAXPROCS; without it Go's default, or
// GOMAXPROCS from the environment, stays.
func TestSetProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	for _, tc := range []struct {
		name      string
		procs     int
		given     bool
		start     int
		wantProcs int
	}{
		{"given", 3, true, 4, 3},
		{"one", 1, true, 2, 1},
		{"not given", 0, false, 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.start)
			setProcs(tc.procs, tc.given)
			if got := runtime.GOMAXPROCS(0); got != tc.wantProcs {
				t.Errorf("GOMAXPROCS %d, want %d", got, tc.wantProcs)
			}
		})
	}
}
