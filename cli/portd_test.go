package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPortdErrors: the portd command's mistakes and a missing portd are one
// line naming the flag or the fix, with the usual exit codes.
func TestPortdErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.sock")
	bad := filepath.Join(dir, "bad.policy")
	os.WriteFile(bad, []byte("allow * * tcp 80\n\nallow * eth0 tcp 1-65535\n"), 0o644)
	badLimit := filepath.Join(dir, "limit.policy")
	os.WriteFile(badLimit, []byte("allow * * tcp ephemeral\nlimit * sessions 4 ports lots\n"), 0o644)
	tests := []struct {
		name     string
		args     []string
		code     int
		want     string
		rootOnly bool
	}{
		{"extra argument", []string{"portd", "bogus"}, 2, "portd: unexpected argument \"bogus\"", false},
		{"status without portd", []string{"portd", "status", "--socket", missing}, 1,
			"portd status: ustack portd is not running at " + missing + " (start it: sudo systemctl start ustack-portd, or sudo ustack portd)", false},
		{"host stack without portd", []string{"fetch", "--net", "host:lo", "--ip", "10.0.0.2/24", "--portd", missing, "http://10.0.0.1/"}, 2,
			"--net: host:lo: ustack portd is not running at " + missing + " (start it:", false},
		{"policy error names line and field", []string{"portd", "--socket", missing, "--policy", bad}, 2,
			"--policy: " + bad + ":3: PORTS \"1-65535\": the range crosses 1024", true},
		{"limit error names line and field", []string{"portd", "--socket", missing, "--policy", badLimit}, 2,
			"--policy: " + badLimit + ":2: ports \"lots\": want a number from 0 to 1048576", true},
		{"missing policy file given", []string{"portd", "--socket", missing, "--policy", filepath.Join(dir, "nope")}, 2,
			"--policy: open " + filepath.Join(dir, "nope"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rootOnly && os.Geteuid() != 0 {
				t.Skip("portd checks its policy only when run as root")
			}
			r := runUstack(t, nil, tc.args...)
			line := oneLine(t, r)
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", r.code, tc.code, line)
			}
			if !strings.HasPrefix(line, "ustack: "+tc.want) {
				t.Errorf("stderr %q, want it to start with %q", line, "ustack: "+tc.want)
			}
		})
	}
}
