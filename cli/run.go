package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/serve"
)

func runCommand() *command {
	c := &command{name: "run", args: "[--] PROG [ARGS...]", summary: "run a program whose TCP sockets use the user-level stack"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name, argsAfterFirst: true}
		var sf stackFlags
		var name string
		s.add(&option{names: []string{"name"}, arg: "NAME",
			value: stringValue{&name},
			help:  "the stack's name on its control socket, for ustack ss, stats, top (default: run-PID)"})
		var mf metricsFlag
		var stackName string
		var procs int
		s.add(procsOption(&procs))
		sf.register(s)
		mf.register(s)
		sf.registerVerbose(s)
		s.add(stackOption(&stackName))
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return usagef("run: missing PROG (usage: ustack run [flags] [--] PROG [ARGS...])")
			}
			if stackName != "" {
				if s.given["procs"] {
					return usagef("--procs: cannot be used with --stack (the daemon's process answers the calls: give --procs to ustack daemon, and drop it here)")
				}
				return runOnDaemon(ctx, e, s, stackName, args)
			}
			setProcs(procs, s.given["procs"])
			if name == "" {
				name = fmt.Sprintf("run-%d", os.Getpid())
			} else if err := checkName(name); err != nil {
				return err
			}
			if err := intercept.CheckKernel(); err != nil {
				return err
			}
			logf := logTo(e, "ustack: run")
			// Refused sockets are always reported: nothing bypasses the
			// stack silently.
			ss, err := openServedStack(name, serve.Config{Command: "run"}, &sf, &mf, logf, logTo(e, "ustack"))
			if err != nil {
				return err
			}
			defer closeServedStack(ss, e)
			// The API lives as long as the program, which may outlast a
			// SIGINT that ustack passes on to it.
			apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
			defer stopAPI()
			go func() {
				if err := ss.Serve(apiCtx); err != nil {
					logf("control socket: %v", err)
				}
			}()
			ps, err := ss.Run(program(e, args))
			if err != nil {
				return startError(err)
			}
			return exitStatus(ps)
		}
	}
	return c
}

// procsOption is --procs, of ustack run and ustack daemon.
func procsOption(procs *int) *option {
	return &option{names: []string{"procs"}, arg: "N", value: intValue{p: procs, min: 1, max: 4096, what: "a number of CPUs"},
		help: "at most N of ustack's threads run Go code at once (GOMAXPROCS; default: Go's, the CPUs it may use); 1 suits request-response traffic, more suit many connections at once"}
}

// setProcs sets how many threads run the supervisor's Go code at once,
// when --procs is given; Go's default (the CPUs this process may use, or
// GOMAXPROCS from the environment) otherwise. One P spares the machine the
// wake-ups of idle threads at each hand-off of a program's request (faster
// request-response), more Ps serve many connections at once (faster
// connection rates); BENCHMARKS.md has the measurements.
func setProcs(procs int, given bool) {
	if given {
		runtime.GOMAXPROCS(procs)
	}
}

// runOnDaemon runs args[0] with --stack: its sockets are the daemon's.
// The stack and its control socket are the daemon's, so the flags that
// would make or name one are refused.
func runOnDaemon(ctx context.Context, e *env, s *optionSet, stackName string, args []string) error {
	if err := refuseStackFlags(s); err != nil {
		return err
	}
	for _, n := range []string{"name", "metrics-addr"} {
		if s.given[n] {
			return usagef("%s: cannot be used with --stack (the daemon serves the stack's API; drop one of them)", s.lookup(n).display())
		}
	}
	if err := intercept.CheckKernel(); err != nil {
		return err
	}
	c, err := daemonClient(stackName)
	if err != nil {
		return err
	}
	ps, err := serve.RunAttached(ctx, c, program(e, args))
	var gone *serve.StackGoneError
	if errors.As(err, &gone) {
		return fmt.Errorf("run: %w", err)
	}
	if err != nil {
		return startError(stackError(c, err))
	}
	return exitStatus(ps)
}

// program is args[0] with ustack's own stdio.
func program(e *env, args []string) serve.Program {
	return serve.Program{
		Args:   args,
		Stdin:  os.Stdin,
		Stdout: fileOr(e.stdout, os.Stdout),
		Stderr: fileOr(e.stderr, os.Stderr),
		Logf:   logTo(e, "ustack: run"),
	}
}

func startError(err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return &exitError{code: 127, msg: "run: " + err.Error()}
	}
	return err
}

// exitStatus is the program's exit status as an exitError (nil for 0;
// 128+N for death by signal N, as shells report it).
func exitStatus(ps *os.ProcessState) error {
	code := ps.ExitCode()
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

func fileOr(w any, def *os.File) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return def
}
