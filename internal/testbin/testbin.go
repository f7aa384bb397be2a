// Package testbin builds the binaries end-to-end tests run: ustack itself
// and small programs of the tests' own, into a temporary directory. Under
// -short (go test -short ./..., the quick inner loop) it builds nothing and
// the end-to-end tests skip.
package testbin

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// shortReason is why an end-to-end test skips under -short.
const shortReason = "-short: end-to-end suite"

// EndToEnd skips t under -short: it is part of an end-to-end suite, which
// builds ustack, runs real programs, makes namespaces or moves a lot of
// data.
func EndToEnd(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip(shortReason)
	}
}

// Run builds ustack (with the race detector when race is set: the
// supervisor is the code such tests exercise) and each of programs (name
// -> package path, built static with CGO_ENABLED=0), runs the tests, removes
// the directory and exits. It returns only through os.Exit; set is called
// with the built paths before the tests run.
//
// Every test of a package that calls Run is end-to-end: under -short Run
// builds nothing and skips them all, saying why; go test then reports the
// package with "[no tests to run]".
func Run(prefix string, race bool, programs map[string]string, set func(ustack string, bins map[string]string), tests func() int) {
	flag.Parse()
	if testing.Short() {
		fmt.Println(shortReason + ": ustack is not built and every test is skipped")
		// -skip (go test's own flag) leaves out every test, so that none
		// runs without the binaries it needs.
		if err := flag.Set("test.skip", "."); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(tests())
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	defer func() { os.RemoveAll(dir); os.Exit(code) }()
	ustack := filepath.Join(dir, "ustack")
	args := []string{"build", "-o", ustack}
	if race {
		args = append(args, "-race")
	}
	if !build(exec.Command("go", append(args, "github.com/ustack/ustack/cmd/ustack")...)) {
		return
	}
	bins := map[string]string{}
	for name, pkg := range programs {
		bins[name] = filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", bins[name], pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if !build(cmd) {
			return
		}
	}
	set(ustack, bins)
	code = tests()
}

func build(cmd *exec.Cmd) bool {
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building test programs (%v): %v\n", cmd.Args, err)
		return false
	}
	return true
}
