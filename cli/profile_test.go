package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfiles: USTACK_GOTRACE, USTACK_CPUPROFILE and USTACK_MEMPROFILE
// write an execution trace, a CPU profile and a heap profile of the ustack
// process; a file that cannot be made is said on stderr and the command
// still runs.
func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	tr, cpu, mem := filepath.Join(dir, "t.trace"), filepath.Join(dir, "c.prof"), filepath.Join(dir, "m.prof")
	r := runUstack(t, []string{"USTACK_GOTRACE=" + tr, "USTACK_CPUPROFILE=" + cpu, "USTACK_MEMPROFILE=" + mem}, "version")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, f := range []struct {
		path, what string
		magic      []byte
	}{{tr, "execution trace", []byte("go 1.")}, {cpu, "CPU profile (gzip)", []byte{0x1f, 0x8b}}, {mem, "heap profile (gzip)", []byte{0x1f, 0x8b}}} {
		b, err := os.ReadFile(f.path)
		if err != nil || !bytes.HasPrefix(b, f.magic) {
			t.Errorf("%s: %d bytes starting %q (%v), want a %s", f.path, len(b), b[:min(len(b), 8)], err, f.what)
		}
	}
	r = runUstack(t, []string{"USTACK_GOTRACE=" + filepath.Join(dir, "no", "such", "dir", "t.trace")}, "version")
	if r.code != 0 || !strings.Contains(r.stderr, "USTACK_GOTRACE:") {
		t.Errorf("an unwritable trace file: exit %d, stderr %q; want 0 and the variable named", r.code, r.stderr)
	}
}
