package cli_test

import (
	"strings"
	"testing"
)

// TestMutate: ustack mutate set puts rules in force on a running stack,
// show prints them with their counters (moved by a ping the rule drops),
// clear takes them away; mistakes are one line, usage errors exit 2.
func TestMutate(t *testing.T) {
	runtimeDir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	startDaemon(t, runtimeDir, "m")
	if r := runUstack(t, env, "mutate", "set", "m", "icmp drop", "ack-division=4"); r.code != 0 || r.stdout != "" {
		t.Fatalf("mutate set: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// Every echo request is dropped: no reply, and the rule counts them.
	if r := runUstack(t, env, "ping", "--stack", "m", "-c", "2", "-i", "0.1", "-W", "1", "10.0.2.2"); r.code == 0 {
		t.Errorf("ping answered through a rule that drops ICMP: %q", r.stdout)
	}
	r := runUstack(t, env, "mutate", "show")
	want := "dev eth0 rule 1: icmp drop\n matched 2 acted 2 injected 0\ndev eth0 rule 2: ack-division=4\n"
	if r.code != 0 || !strings.HasPrefix(r.stdout, want) {
		t.Errorf("mutate show: exit %d\n%s\nwant it to begin\n%s", r.code, r.stdout, want)
	}
	if r := runUstack(t, env, "mutate", "clear", "m"); r.code != 0 {
		t.Fatalf("mutate clear: exit %d %q", r.code, r.stderr)
	}
	if r := runUstack(t, env, "mutate", "show", "m"); r.stdout != "dev eth0: no rules\ndev eth0 malformed 0\n" {
		t.Errorf("after clear: %q", r.stdout)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"mutate", "set", "m", "drop tcp dport 70000"}, 2, `ustack: mutate set: "drop tcp dport 70000": dport "70000" is not a number`},
		{[]string{"mutate", "set", "m"}, 2, `ustack: mutate set: "m": unknown word "m"`},
		{[]string{"mutate", "set"}, 2, "ustack: mutate set: missing RULE"},
		{[]string{"mutate", "set", "nosuch", "drop"}, 1, "ustack: mutate set: no stack named nosuch is running"},
		{[]string{"mutate", "frob"}, 2, `ustack: mutate: "frob" is not set, clear or show`},
		{[]string{"daemon", "--name", "x", "--mutate", "in dupack=3"}, 2, `ustack: --mutate: dupack applies to the ACKs the stack sends`},
		{[]string{"run", "--stack", "m", "--mutate", "drop", "--", "true"}, 2, "ustack: --mutate: cannot be used with --stack"},
	} {
		r := runUstack(t, env, tc.args...)
		if line := oneLine(t, r); r.code != tc.code || !strings.HasPrefix(line, tc.want) {
			t.Errorf("ustack %s: exit %d, %q; want %d, %q", strings.Join(tc.args, " "), r.code, line, tc.code, tc.want)
		}
	}
}
