package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"ustack/inspect"
	"ustack/intercept"
	"ustack/sockets"
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
		sf.register(s)
		mf.register(s)
		sf.registerVerbose(s)
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return usagef("run: missing PROG (usage: ustack run [flags] [--] PROG [ARGS...])")
			}
			if name == "" {
				name = fmt.Sprintf("run-%d", os.Getpid())
			} else if err := checkName(name); err != nil {
				return err
			}
			if err := intercept.CheckKernel(); err != nil {
				return err
			}
			logf := logTo(e, "ustack: run")
			srv, err := listenControl(name, logf)
			if err != nil {
				return err
			}
			metricsLn, err := mf.listen()
			if err != nil {
				srv.Close()
				return err
			}
			st, err := sf.newStack(logTo(e, "ustack"))
			if err != nil {
				srv.Close()
				if metricsLn != nil {
					metricsLn.Close()
				}
				return err
			}
			defer closeStack(st, e)
			// Refused sockets are always reported: nothing bypasses the
			// stack silently.
			mgr := sockets.New(st.Netstack(), logf)
			defer mgr.Close()
			owners, _ := any(mgr).(inspect.Owners)
			api := newStackAPI(srv, st, "run", owners, logf)
			defer api.close()
			// The API lives as long as the program, which may outlast a
			// SIGINT that ustack passes on to it.
			apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
			defer stopAPI()
			go func() {
				if err := api.serve(apiCtx); err != nil {
					logf("control socket: %v", err)
				}
			}()
			serveMetrics(apiCtx, metricsLn, inspect.MetricsHandler(api.target), logf)
			return runProgram(e, mgr, args)
		}
	}
	return c
}

// runProgram runs args[0] under interception and returns its exit status as
// an exitError (nil for 0).
func runProgram(e *env, mgr *sockets.Manager, args []string) error {
	p, err := intercept.Start(intercept.Config{
		Path:    args[0],
		Args:    args,
		Stdin:   os.Stdin,
		Stdout:  fileOr(e.stdout, os.Stdout),
		Stderr:  fileOr(e.stderr, os.Stderr),
		Handler: mgr,
		Logf:    logTo(e, "ustack: run"),
	})
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return &exitError{code: 127, msg: "run: " + err.Error()}
	}
	if err != nil {
		return err
	}
	// The program gets the signals that would stop ustack; ustack stops
	// when the program does.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				p.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	ps, _ := p.Wait()
	close(done)
	// Let data the program wrote just before exiting reach its peers.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	mgr.Settle(ctx)
	cancel()
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
