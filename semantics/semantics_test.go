// Package semantics holds ustack to Linux: each scenario of the probe
// program runs once on the kernel's stack and once under `ustack run`, and
// what the program observed must be the same.
package semantics

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ustack/intercept"
)

var ustackBin, probeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ustack-semantics")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ustackBin, probeBin = filepath.Join(dir, "ustack"), filepath.Join(dir, "probe")
	for bin, pkg := range map[string]string{ustackBin: "ustack/cmd/ustack", probeBin: "ustack/semantics/probe"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill(); close(done) })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	select {
	case <-done:
		t.Fatalf("%s: still running after 30 s; output so far:\n%s", strings.Join(args, " "), out)
	default:
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestLinuxSemantics(t *testing.T) {
	if err := intercept.CheckKernel(); err != nil {
		t.Skipf("this kernel cannot run programs under ustack: %v", err)
	}
	for _, scenario := range []string{"names", "connect-nonblock", "refused", "halfclose", "sockopts", "badargs", "dualstack"} {
		t.Run(scenario, func(t *testing.T) {
			kernel := run(t, probeBin, scenario)
			user := run(t, ustackBin, "run", "--", probeBin, scenario)
			if kernel != user {
				t.Errorf("the program saw different things.\non the kernel:\n%s\nunder ustack:\n%s", kernel, user)
			}
		})
	}
}
