// Package cli implements the ustack command: its subcommands, flags,
// environment variables and exit codes. cmd/ustack only calls Main.
//
// Exit codes: 0 success, 1 a runtime failure (a refused connection, an HTTP
// error status, no ping reply), 2 a usage error (unknown command or flag, a
// bad value, a stack configuration the stack refused). Every error is one
// line on stderr: "ustack: <flag or command>: <what is wrong> (<fix>)".
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ustack/ustack"
)

// command is one subcommand.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string
	// options returns the command's flags bound to a fresh state, and the
	// function that runs the command with its positional arguments.
	options func() (*optionSet, func(ctx context.Context, env *env, args []string) error)
}

// env is what a running command may touch of the process.
type env struct {
	stdout, stderr io.Writer
}

func commands() map[string]*command {
	cmds := map[string]*command{}
	for _, c := range []*command{versionCommand(), fetchCommand(), pingCommand(), daemonCommand(), runCommand(), lsCommand(), ssCommand(), statsCommand(), topCommand(), traceCommand(), captureCommand(), plotCommand(), portdCommand(), drillCommand(), linkCommand(), mutateCommand(), sysctlCommand(), switchCommand(), labCommand(), helpCommand()} {
		cmds[c.name] = c
	}
	return cmds
}

// Main runs ustack with args (without the program name) and returns the
// exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer startProfiles(stderr)()
	err := run(ctx, args, &env{stdout: stdout, stderr: stderr})
	return report(err, stderr)
}

func run(ctx context.Context, args []string, e *env) error {
	if len(args) == 0 {
		return usagef("missing command (see: ustack help)")
	}
	name := args[0]
	switch name {
	case "-h", "--help", "-help":
		name = "help"
	case "--version", "-version":
		name = "version"
	}
	cmd, ok := commands()[name]
	if !ok {
		if strings.HasPrefix(name, "-") {
			return usagef("%s: flags go after the command, e.g. ustack fetch %s ... (see: ustack help)", name, name)
		}
		return usagef("%s: unknown command (see: ustack help)", name)
	}
	opts, runCmd := cmd.options()
	positional, err := opts.parse(args[1:], lookupEnv)
	if errors.Is(err, errHelp) {
		fmt.Fprint(e.stdout, commandHelp(cmd))
		return nil
	}
	if err != nil {
		return err
	}
	return runCmd(ctx, e, positional)
}

// report prints err as one line and returns the exit status.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	var ce *ustack.ConfigError
	var ee *exitError
	code, msg := 1, err.Error()
	switch {
	case errors.As(err, &ee):
		if ee.msg == "" {
			return ee.code
		}
		code = ee.code
	case errors.As(err, &ue):
		code = 2
	case errors.As(err, &ce):
		code, msg = 2, describeConfigError(ce)
	}
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
	fmt.Fprintf(stderr, "ustack: %s\n", msg)
	return code
}

// exitError ends a command with a status of its choosing; with an empty
// message nothing more is printed (ping has already said why).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// wantArgs checks the number of positional arguments.
func wantArgs(cmd string, args []string, names ...string) error {
	if len(args) < len(names) {
		return usagef("%s: missing %s (usage: ustack %s [flags] %s)", cmd, names[len(args)], cmd, strings.Join(names, " "))
	}
	if len(args) > len(names) {
		return usagef("%s: unexpected argument %q (usage: ustack %s [flags] %s)", cmd, args[len(names)], cmd, strings.Join(names, " "))
	}
	return nil
}
