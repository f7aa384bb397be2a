package cli

import (
	"runtime"
	"testing"
)

func TestDefaultProcs(t *testing.T) {
	for _, tc := range []struct{ cpus, want int }{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {16, 8}} {
		if got := defaultProcs(tc.cpus); got != tc.want {
			t.Errorf("defaultProcs(%d) = %d, want %d", tc.cpus, got, tc.want)
		}
	}
}

// TestSetProcs: --procs wins; without it GOMAXPROCS from the environment
// is left alone, and otherwise half of Go's default is taken.
func TestSetProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	for _, tc := range []struct {
		name      string
		procs     int
		given     bool
		env       string
		start     int
		wantProcs int
	}{
		{"flag", 3, true, "", 4, 3},
		{"flag over environment", 1, true, "4", 4, 1},
		{"environment", 0, false, "4", 4, 4},
		{"default", 0, false, "", 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tc.env)
			runtime.GOMAXPROCS(tc.start)
			setProcs(tc.procs, tc.given)
			if got := runtime.GOMAXPROCS(0); got != tc.wantProcs {
				t.Errorf("GOMAXPROCS %d, want %d", got, tc.wantProcs)
			}
		})
	}
}
