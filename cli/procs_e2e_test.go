package cli_test

import (
	"strings"
	"testing"

	"github.com/ustack/ustack/internal/testwait"
)

// TestProcsFlag: --procs and USTACK_PROCS, of ustack run and ustack daemon,
// are checked like every flag, and a program runs with one P.
func TestProcsFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		msg  string
	}{
		{"zero", nil, []string{"run", "--procs", "0", "--", "true"}, 2, "--procs: 0 is out of range"},
		{"not a number", []string{"USTACK_PROCS=many"}, []string{"run", "--", "true"}, 2, "USTACK_PROCS"},
		{"with --stack", nil, []string{"run", "--procs", "1", "--stack", "none", "--", "true"}, 2, "--procs: cannot be used with --stack"},
		{"one", nil, []string{"run", "--procs", "1", "--", "true"}, 0, ""},
		{"from the environment", []string{"USTACK_PROCS=2"}, []string{"run", "--", "true"}, 0, ""},
		{"daemon, zero", nil, []string{"daemon", "--name", "procs-zero", "--procs", "0"}, 2, "--procs: 0 is out of range"},
		{"daemon, not a number", []string{"USTACK_PROCS=many"}, []string{"daemon", "--name", "procs-many"}, 2, "USTACK_PROCS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runUstack(t, tc.env, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			if tc.msg != "" && !strings.Contains(oneLine(t, r), tc.msg) {
				t.Errorf("stderr %q does not say %q", r.stderr, tc.msg)
			}
		})
	}
}

// TestDaemonProcs: ustack daemon --procs 1 runs its Go code on one P, as the
// runtime's scheduler trace reports once the flag is applied.
func TestDaemonProcs(t *testing.T) {
	// GOMAXPROCS=3 from the environment: only the flag makes it 1.
	d := startDaemonEnv(t, t.TempDir(), "procs-one", []string{"GODEBUG=schedtrace=10", "GOMAXPROCS=3"}, "--procs", "1")
	testwait.For(t, "a scheduler trace line saying gomaxprocs=1", func() bool {
		return strings.Contains(d.stderr.String(), " gomaxprocs=1 ")
	})
}
