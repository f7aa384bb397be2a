// Package leakcheck turns on netstack's reference-leak checking for a test
// binary. netstack counts references to its packet buffers, buffer chunks,
// TCP segments and addresses by hand; one that is never released is memory
// the stack loses for good, which no test would otherwise notice.
package leakcheck

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/refs"
)

// retries are the pauses before the leak check is repeated: goroutines of
// stacks closed by the last tests may still be dropping their references.
// Few, because netstack's check is slow when much has leaked.
var retries = []time.Duration{50 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second}

// Main runs the tests with every reference-counted netstack object
// registered, and fails the run, naming what was left, if any is still
// referenced once the tests are over. Use it as TestMain's body:
//
//	func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
//
// It must run before the binary creates any netstack object: objects made
// while checking was off cannot be tracked.
//
// A run that measures benchmarks (-test.bench) goes without the check:
// netstack then registers every packet buffer and segment in one map under
// one lock, which took 28 % of the CPU of a one-stream transfer between two
// stacks and a third of its throughput.
func Main(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		return m.Run()
	}
	refs.SetLeakMode(refs.LeaksPanic)
	code := m.Run()
	if code != 0 {
		return code
	}
	report := leaks()
	for _, pause := range retries {
		if report == "" {
			return 0
		}
		runtime.GC()
		time.Sleep(pause) // nothing signals the last release: poll
		report = leaks()
	}
	if report == "" {
		return 0
	}
	fmt.Fprintf(os.Stderr, "FAIL: netstack objects still referenced after the tests (reference leak):\n%s\n", report)
	return 1
}

// leaks returns netstack's report of the objects still registered, or ""
// when there are none. In LeaksPanic mode the report comes as a panic.
func leaks() (report string) {
	defer func() {
		if r := recover(); r != nil {
			report = fmt.Sprint(r)
		}
	}()
	refs.DoRepeatedLeakCheck()
	return ""
}
