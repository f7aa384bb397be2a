package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/serve"
)

func daemonCommand() *command {
	c := &command{name: "daemon", summary: "run a named, long-lived stack served on a control socket"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var sf stackFlags
		var mf metricsFlag
		var name string
		s.add(&option{names: []string{"name"}, arg: "NAME", value: stringValue{&name},
			help: "the stack's name; other commands reach it with --stack NAME (required)"})
		var procs int
		s.add(procsOption(&procs))
		sf.register(s)
		mf.register(s)
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args); err != nil {
				return err
			}
			if err := checkName(name); err != nil {
				return err
			}
			// The daemon's process answers the calls of every program
			// attached to it.
			setProcs(procs, s.given["procs"])
			return runDaemon(ctx, name, &sf, &mf, e)
		}
	}
	return c
}

func checkName(name string) error {
	if name == "" {
		return usagef("daemon: --name: missing (give the stack a name, e.g. --name lab1)")
	}
	if !control.ValidName(name) {
		return usagef("--name: %q is not a valid name (use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", name)
	}
	return nil
}

// daemonClient is a client of the stack called name, the argument of
// --stack.
func daemonClient(name string) (*control.Client, error) {
	name = control.StackName(name)
	if err := checkName(name); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return nil, usagef("%s", strings.Replace(ue.msg, "--name", "--stack", 1))
		}
		return nil, err
	}
	return control.Dial(name), nil
}

// stackError explains that no daemon answers for --stack, or that the
// one answering is not the user's.
func stackError(c *control.Client, err error) error {
	var nr *control.NotRunningError
	if errors.As(err, &nr) {
		return fmt.Errorf("--stack: no daemon is running on %s (start one with: ustack daemon --name NAME)", c.Socket)
	}
	var ue *control.UntrustedError
	if errors.As(err, &ue) {
		return fmt.Errorf("--stack: %w", ue)
	}
	return err
}

func runDaemon(ctx context.Context, name string, sf *stackFlags, mf *metricsFlag, e *env) error {
	prefix := "ustack daemon " + name
	logf := logTo(e, prefix)
	sf.verbose = true // a daemon's stderr is its log
	// Programs attached with 'ustack run --stack NAME' share the stack.
	ss, err := openServedStack(name, serve.Config{Command: "daemon", Attach: true}, sf, mf, logf, logf)
	if err != nil {
		return err
	}
	defer closeServedStack(ss, e)
	info := ss.Info()
	fmt.Fprintf(e.stdout, "%s: ready on %s (addresses %s)\n", prefix, info.Socket, strings.Join(info.Addresses, " "))
	if err := ss.Serve(ctx); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	fmt.Fprintf(e.stdout, "%s: stopped\n", prefix)
	return nil
}

// openServedStack takes the name and its control socket first, so that a
// second stack of a live name is refused before it builds a stack (and
// takes host ports); then --metrics-addr, then the stack. logf is the
// command's log, stackLogf the stack's.
func openServedStack(name string, cfg serve.Config, sf *stackFlags, mf *metricsFlag, logf, stackLogf func(string, ...any)) (*serve.Stack, error) {
	srv, err := listenControl(name, logf)
	if err != nil {
		return nil, err
	}
	metricsLn, err := mf.listen()
	if err != nil {
		srv.Close()
		return nil, err
	}
	sf.label = name // names the stack's port on a switch
	st, err := sf.newStack(stackLogf)
	if err != nil {
		srv.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
		return nil, err
	}
	cfg.Version, _ = versions()
	cfg.Metrics = metricsLn
	cfg.Logf = logf
	return serve.New(srv, st, cfg), nil
}

// closeServedStack closes the served stack, reporting trouble in closing
// the stack itself.
func closeServedStack(ss *serve.Stack, e *env) {
	if err := ss.Close(); err != nil {
		fmt.Fprintf(e.stderr, "ustack: closing the stack: %v\n", err)
	}
}

// listenControl takes the name and its socket; a name in use is a usage
// error.
func listenControl(name string, logf func(string, ...any)) (*control.Server, error) {
	srv, err := control.Listen(name, logf)
	var taken *control.NameTakenError
	if errors.As(err, &taken) {
		return nil, usagef("--name: %v", err)
	}
	if err != nil {
		return nil, err
	}
	return srv, nil
}
