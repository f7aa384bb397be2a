package testprog

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// recorder is a testing.TB that records what Need skipped or failed with;
// like testing's own, Skipf and Fatalf end the goroutine.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.msg = "skip: " + fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = "fatal: " + fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// need runs Need on a recorder and returns the path, or what it said.
func need(t *testing.T, name string) (path, msg string) {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path = Need(r, name)
	}()
	<-done
	return path, r.msg
}

// fakeProgram writes an executable shell script named name into dir that
// prints out.
func fakeProgram(t *testing.T, dir, name, out string) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\necho '%s'\n", out)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestNeed(t *testing.T) {
	dir := t.TempDir()
	// A machine where nc is nmap's ncat and ping is inetutils'.
	fakeProgram(t, dir, "nc", "Ncat: Version 7.93")
	fakeProgram(t, dir, "ping", "ping (GNU inetutils) 2.4")
	fakeProgram(t, dir, "tmux", "tmux 3.3a")
	t.Setenv("PATH", dir)
	for _, tc := range []struct {
		name, want string
	}{
		{"nc.openbsd", "skip: nc.openbsd is not installed: apt-get install netcat-openbsd"},
		{"ping", "skip: " + filepath.Join(dir, "ping") + " is not the ping the tests are written for"},
		{"tmux", ""},
		{"nc", "fatal: testprog: nc is not in the table"},
		{"dlv", "skip: dlv is not installed: go install github.com/go-delve/delve/cmd/dlv@"},
	} {
		path, msg := need(t, tc.name)
		if tc.want == "" {
			if msg != "" || path != filepath.Join(dir, tc.name) {
				t.Errorf("Need(%s) = %q and said %q, want %s", tc.name, path, msg, filepath.Join(dir, tc.name))
			}
			continue
		}
		if !strings.HasPrefix(msg, tc.want) {
			t.Errorf("Need(%s) said %q, want it to begin %q", tc.name, msg, tc.want)
		}
	}
	// The variant check names the package that has the right one.
	if _, msg := need(t, "ping"); !strings.Contains(msg, "apt-get install iputils-ping") {
		t.Errorf("Need(ping) said %q, want the package iputils-ping named", msg)
	}
}

// TestScriptInstallsEveryPackage: the packages scripts/test.sh installs
// are those of the programs in the table, and what Go itself needs.
func TestScriptInstallsEveryPackage(t *testing.T) {
	// Go's module downloads are HTTPS; the race detector needs cgo, whose
	// gcc and libc6-dev the table has already.
	want := append(Packages(), "ca-certificates")
	slices.Sort(want)
	got := scriptPackages(t, "../../scripts/test.sh")
	if !slices.Equal(got, want) {
		t.Errorf("scripts/test.sh installs\n  %v\nwant\n  %v", got, want)
	}
}

// scriptPackages reads the packages=( ... ) list of the script.
func scriptPackages(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pkgs []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		switch {
		case line == "packages=(":
			in = true
		case in && line == ")":
			slices.Sort(pkgs)
			return pkgs
		case in:
			pkgs = append(pkgs, strings.Fields(line)...)
		}
	}
	t.Fatalf("%s has no packages=( ... ) list", path)
	return nil
}
