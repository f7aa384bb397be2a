package main

import "testing"

// TestUsage: bad flags are usage errors (exit status 2) before anything runs.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"-cc", "reno,nosuch"}, {"-parallel", "-1"}, {"extra"}, {"-nosuch"}} {
		if got := run(args); got != 2 {
			t.Errorf("ccreport %v: exit status %d, want 2", args, got)
		}
	}
}
