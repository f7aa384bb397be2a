package drill

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// suite lists the scripts of the suite.
func suite(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*/*.pkt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts under testdata/")
	}
	return files
}

// fingerprint is everything a run reports, for comparing runs byte for
// byte.
func fingerprint(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %d\n", r.Status(), r.Skipped, r.ScriptTime)
	if r.Err != nil {
		b.WriteString(r.Err.Error())
	}
	for _, l := range r.Log {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestDeterminism runs every script of the suite many times in virtual
// time and requires byte-identical results: the same packets at the same
// times, the same calls with the same results, the same verdict.
// DRILL_RUNS sets the number of runs (default 100; 10 with -short, and 3
// under the race detector, which makes each run ten times slower: there the
// runs cover the runner's concurrency, and the plain pass's 100 runs check
// the determinism).
func TestDeterminism(t *testing.T) {
	runs := 100
	switch {
	case raceEnabled:
		runs = 3
	case testing.Short():
		runs = 10
	}
	if v, err := strconv.Atoi(os.Getenv("DRILL_RUNS")); err == nil && v > 0 {
		runs = v
	}
	cfg := DefaultConfig()
	cfg.Verbose = true
	rn := NewRunner(cfg, t.Logf)
	defer rn.Close()
	start := time.Now()
	total := 0
	for _, f := range suite(t) {
		var first string
		for i := 0; i < runs; i++ {
			r := rn.Run(f, "ustack")
			total++
			fp := fingerprint(r)
			if i == 0 {
				first = fp
				if !r.OK() {
					t.Errorf("%s: %s\n%s", f, r.Status(), fp)
					break
				}
				continue
			}
			if fp != first {
				t.Errorf("%s: run %d differs from run 1:\n--- run 1:\n%s\n--- run %d:\n%s", f, i+1, first, i+1, fp)
				break
			}
		}
		t.Logf("%s: %d identical runs, result %x", f, runs, sha256.Sum256([]byte(first)))
	}
	t.Logf("%d runs in %v (%v a run)", total, time.Since(start), time.Since(start)/time.Duration(max(total, 1)))
}
