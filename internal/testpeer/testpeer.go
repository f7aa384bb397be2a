// Package testpeer lets a test binary run itself again as a peer process:
// a server or client inside a network namespace, a client as another user,
// a program under a seccomp filter. The test names a mode and its
// arguments; the re-run binary, in TestMain, runs that mode's function
// instead of the tests and exits.
//
// The mode travels in the environment variable USTACK_TEST_PEER, the
// arguments as the process's own (so they may hold any text, and ps shows
// them). A mode that serves prints "ready" (Ready) once it does, and the
// test waits for that line (StartReady) rather than for a while.
package testpeer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testwait"
)

// EnvVar names the mode a re-run test binary is to run.
const EnvVar = "USTACK_TEST_PEER"

// A Mode is what a peer does: it gets the arguments the test gave and
// returns when done. An error ends the process with exit status 1 after
// printing it to stderr, or with the status of an Exit.
type Mode func(args []string) error

// Exit is an error that ends a peer with its value as the exit status and
// prints nothing more: for a mode whose status is what the test checks.
type Exit int

func (e Exit) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Dispatch, called first thing in TestMain, runs the mode this process was
// started in and exits. In the test binary's own run (no mode set) it
// returns at once. An unknown mode exits with status 2.
func Dispatch(modes map[string]Mode) {
	name, ok := os.LookupEnv(EnvVar)
	if !ok {
		return
	}
	// The peer's own children are not peers.
	os.Unsetenv(EnvVar)
	mode, ok := modes[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "%s=%s: no such mode\n", EnvVar, name)
		os.Exit(2)
	}
	err := mode(os.Args[1:])
	var code Exit
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &code):
		os.Exit(int(code))
	default:
		fmt.Fprintf(os.Stderr, "peer %s: %v\n", name, err)
		os.Exit(1)
	}
}

// Ready tells the test waiting in StartReady that the peer serves.
func Ready() { fmt.Println("ready") }

// Command is the command that runs this test binary as a peer in mode,
// with args.
func Command(mode string, args ...string) *exec.Cmd {
	return Spec{Mode: mode, Args: args}.Command(context.Background())
}

// CommandIn is Command inside the network namespace netns (through ip
// netns exec).
func CommandIn(netns, mode string, args ...string) *exec.Cmd {
	return Spec{Mode: mode, Args: args, Netns: netns}.Command(context.Background())
}

// Spec is a peer in full, for what Command and CommandIn leave out.
type Spec struct {
	Mode string
	Args []string
	// Netns, if set, is the network namespace the peer runs in.
	Netns string
	// Binary is the program to run: "" for this test binary, or a copy of
	// it where another user may run it.
	Binary string
}

// Command is the command that runs the peer; ctx kills it as
// exec.CommandContext does. The caller may set anything else of it
// (Stdout, Dir, SysProcAttr) before starting it.
func (s Spec) Command(ctx context.Context) *exec.Cmd {
	bin := s.Binary
	if bin == "" {
		bin = self()
	}
	name, args := bin, s.Args
	if s.Netns != "" {
		name, args = "ip", append([]string{"netns", "exec", s.Netns, bin}, s.Args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), EnvVar+"="+s.Mode)
	return cmd
}

// self is the path of the running test binary.
func self() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return os.Args[0]
}

// StartReady starts cmd, a peer whose mode calls Ready once it serves, and
// waits for that line; the peer is killed when the test ends. It returns
// the rest of the peer's standard output. The peer's stderr goes to the
// test's unless cmd says otherwise.
func StartReady(t testing.TB, cmd *exec.Cmd) *bufio.Reader {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting peer %s: %v", describe(cmd), err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	r := bufio.NewReader(stdout)
	line := make(chan string, 1)
	go func() {
		s, err := r.ReadString('\n')
		if err != nil {
			s += "(" + err.Error() + ")"
		}
		line <- s
	}()
	var got string
	select {
	case got = <-line:
	case <-time.After(testwait.Ceiling):
		t.Fatalf("peer %s did not say ready within %v", describe(cmd), testwait.Ceiling)
	}
	if got != "ready\n" {
		t.Fatalf("peer %s said %q, want \"ready\"", describe(cmd), got)
	}
	return r
}

// describe names a peer command by its mode and arguments.
func describe(cmd *exec.Cmd) string {
	mode := "?"
	for _, kv := range cmd.Env {
		if v, ok := strings.CutPrefix(kv, EnvVar+"="); ok {
			mode = v
		}
	}
	args := cmd.Args[1:]
	if len(cmd.Args) > 4 && cmd.Args[1] == "netns" {
		args = cmd.Args[5:]
	}
	return strings.Join(append([]string{mode}, args...), " ")
}
