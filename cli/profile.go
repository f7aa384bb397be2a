package cli

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles starts what USTACK_CPUPROFILE, USTACK_GOTRACE and
// USTACK_MEMPROFILE ask for: a CPU profile (for go tool pprof), an
// execution trace (for go tool trace, which shows every goroutine
// hand-off, system call and scheduler wait) of this ustack process, written
// to the files they name until the process ends, and a heap profile taken
// after a collection as it ends (what a daemon still holds once its
// connections are gone). It returns what finishes them.
func startProfiles(stderr io.Writer) (stop func()) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	start := func(env string, begin func(io.Writer) error, end func(io.Writer) error) {
		path := os.Getenv(env)
		if path == "" {
			return
		}
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(stderr, "ustack: %s: %v (no profile written)\n", env, err)
			return
		}
		if err := begin(f); err != nil {
			fmt.Fprintf(stderr, "ustack: %s: %v (no profile written)\n", env, err)
			f.Close()
			return
		}
		stops = append(stops, func() {
			if err := end(f); err != nil {
				fmt.Fprintf(stderr, "ustack: %s: %v\n", env, err)
			}
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "ustack: %s: %v\n", env, err)
			}
		})
	}
	start("USTACK_CPUPROFILE", pprof.StartCPUProfile, func(io.Writer) error { pprof.StopCPUProfile(); return nil })
	start("USTACK_GOTRACE", trace.Start, func(io.Writer) error { trace.Stop(); return nil })
	start("USTACK_MEMPROFILE", func(io.Writer) error { return nil }, func(w io.Writer) error {
		runtime.GC()
		return pprof.WriteHeapProfile(w)
	})
	return stop
}
