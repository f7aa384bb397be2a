package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A passing script, and one whose stack does not do what it says: the
// SYN-ACK's window is not 1.
const (
	drillPass = `0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 bind(3, ..., ...) = 0
+0 listen(3, 10) = 0
+0 < S 0:0(0) win 65535 <mss 1000>
+0 > S. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 65535
+0 accept(3, ..., ...) = 4
`
	drillFail = `0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 bind(3, ..., ...) = 0
+0 listen(3, 10) = 0
+0 < S 0:0(0) win 65535 <mss 1000>
+0 > S. 0:0(0) ack 1 win 1 <...>
`
)

func TestDrill(t *testing.T) {
	dir := t.TempDir()
	pass, fail := filepath.Join(dir, "pass.pkt"), filepath.Join(dir, "fail.pkt")
	os.WriteFile(pass, []byte(drillPass), 0o644)
	os.WriteFile(fail, []byte(drillFail), 0o644)

	r := runUstack(t, nil, "drill", pass)
	if r.code != 0 || !strings.Contains(r.stdout, "ustack pass") {
		t.Fatalf("drill %s: exit %d\nstdout: %s\nstderr: %s", pass, r.code, r.stdout, r.stderr)
	}
	r = runUstack(t, nil, "drill", pass, fail)
	if r.code != 1 {
		t.Fatalf("drill with a failing script: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"fail.pkt:5: error handling packet: live packet field tcp_window: expected: 1 (0x1)",
		"script packet:  0.000000 S. 0:0(0) ack 1 win 1 <...>", "actual packet:  0.000000 S. 0:0(0) ack 1 win"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the report lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "drill: 1 of 2 runs failed") {
		t.Errorf("stderr: %q", r.stderr)
	}
}

func TestDrillUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"drill"}, "drill: missing FILE.pkt"},
		{[]string{"drill", "--against", "bsd", "x.pkt"}, "--against: unknown stack"},
		{[]string{"drill", "--tolerance_usecs=soon", "x.pkt"}, "--tolerance_usecs"},
		{[]string{"drill", "--ip_version=ipv5", "x.pkt"}, "--ip_version"},
		{[]string{"drill", "--wire_client", "x.pkt"}, "--wire_client"},
		{[]string{"drill", "--sysctl", "tcp.sack", "x.pkt"}, "--sysctl"},
	} {
		r := runUstack(t, nil, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("ustack %s: exit %d, stderr %q; want exit 2 and one line naming %s", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
}
