package cli

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles starts what USTACK_CPUPROFILE and USTACK_GOTRACE ask for:
// a CPU profile (for go tool pprof) and an execution trace (for go tool
// trace, which shows every goroutine hand-off, system call and scheduler
// wait) of this ustack process, written to the files they name until the
// process ends. It returns what finishes them.
func startProfiles(stderr io.Writer) (stop func()) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	start := func(env string, begin func(io.Writer) error, end func()) {
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
			end()
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "ustack: %s: %v\n", env, err)
			}
		})
	}
	start("USTACK_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile)
	start("USTACK_GOTRACE", trace.Start, trace.Stop)
	return stop
}
