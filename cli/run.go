package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/nat"
	"github.com/ustack/ustack/sockets"
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
		sf.register(s)
		mf.register(s)
		sf.registerVerbose(s)
		s.add(stackOption(&stackName))
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return usagef("run: missing PROG (usage: ustack run [flags] [--] PROG [ARGS...])")
			}
			if stackName != "" {
				return runOnDaemon(ctx, e, s, stackName, args)
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
			// Refused sockets are always reported: nothing bypasses the
			// stack silently.
			ss, err := openServedStack(name, "run", &sf, &mf, logf, logTo(e, "ustack"))
			if err != nil {
				return err
			}
			defer ss.close(e)
			// The API lives as long as the program, which may outlast a
			// SIGINT that ustack passes on to it.
			apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
			defer stopAPI()
			go func() {
				if err := ss.serve(apiCtx); err != nil {
					logf("control socket: %v", err)
				}
			}()
			ss.serveMetrics(apiCtx)
			return runProgram(e, ss.mgr, args)
		}
	}
	return c
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
	sock, err := daemonSocket(stackName)
	if err != nil {
		return err
	}
	return runAttached(ctx, e, sock, args)
}

// runProgram runs args[0] under interception, its calls answered by mgr,
// and returns its exit status as an exitError (nil for 0).
func runProgram(e *env, mgr *sockets.Manager, args []string) error {
	p, err := intercept.Start(programConfig(e, mgr, args))
	if err != nil {
		return startError(err)
	}
	err = waitProgram(p)
	// Let data the program wrote just before exiting reach its peers.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	mgr.Settle(ctx)
	cancel()
	return err
}

// runAttached runs args[0] under interception with its calls answered by
// the daemon on sock, and returns its exit status.
func runAttached(ctx context.Context, e *env, sock string, args []string) error {
	p, listener, err := intercept.Launch(programConfig(e, nil, args))
	if err != nil {
		return startError(err)
	}
	err = attachToDaemon(ctx, sock, listener)
	unix.Close(listener)
	if err != nil {
		// Nobody will answer its calls: it must not run.
		p.Signal(syscall.SIGKILL)
		p.Wait()
		return err
	}
	return waitProgram(p)
}

func programConfig(e *env, h intercept.Handler, args []string) intercept.Config {
	return intercept.Config{
		Path:    args[0],
		Args:    args,
		Stdin:   os.Stdin,
		Stdout:  fileOr(e.stdout, os.Stdout),
		Stderr:  fileOr(e.stderr, os.Stderr),
		Handler: h,
		Logf:    logTo(e, "ustack: run"),
	}
}

func startError(err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return &exitError{code: 127, msg: "run: " + err.Error()}
	}
	return err
}

// waitProgram forwards the signals that would stop ustack to the program,
// waits for it, and returns its exit status as an exitError (nil for 0;
// 128+N for death by signal N, as shells report it).
func waitProgram(p *intercept.Process) error {
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
	code := ps.ExitCode()
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// redirectNameservers sends the program's DNS queries, addressed to the
// host's nameservers from /etc/resolv.conf, to the stack's DNS address on
// nat (which forwards them to those nameservers, or to --dns-upstream).
// Without it a host resolver on loopback, such as systemd-resolved's
// 127.0.0.53, would be the stack's own loopback, where nothing answers.
func redirectNameservers(mgr *sockets.Manager, st *ustack.Stack) {
	if _, onNAT := st.Attachment().(ustack.NAT); !onNAT {
		return
	}
	servers, err := nat.HostResolvers("/etc/resolv.conf")
	if err != nil {
		return
	}
	for _, ns := range servers {
		for _, dns := range st.DNS() {
			if dns.Is4() == ns.Addr().Unmap().Is4() {
				mgr.Redirect(ns, netip.AddrPortFrom(dns, 53))
				break
			}
		}
	}
}

func fileOr(w any, def *os.File) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return def
}
