package testpeer_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ustack/ustack/internal/testpeer"
)

func TestMain(m *testing.M) {
	testpeer.Dispatch(map[string]testpeer.Mode{
		"args": func(args []string) error {
			fmt.Printf("%q %s\n", args, os.Getenv(testpeer.EnvVar))
			return nil
		},
		"fail":   func([]string) error { return errors.New("it went wrong") },
		"status": func([]string) error { return testpeer.Exit(3) },
		"serve": func(args []string) error {
			testpeer.Ready()
			fmt.Println("served", args[0])
			return nil
		},
		"netns": func([]string) error {
			link, err := os.Readlink("/proc/self/ns/net")
			fmt.Println(link)
			return err
		},
	})
	os.Exit(m.Run())
}

// TestModes: a peer runs its mode with the test's arguments as given
// (spaces and all), without the mode in its environment, and ends with the
// status its mode's result calls for.
func TestModes(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{mode: "args", args: []string{"10.0.0.1:80", "two words", ""}, stdout: `["10.0.0.1:80" "two words" ""] ` + "\n"},
		{mode: "fail", code: 1, stderr: "peer fail: it went wrong\n"},
		{mode: "status", code: 3},
		{mode: "no-such-mode", code: 2, stderr: testpeer.EnvVar + "=no-such-mode: no such mode\n"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := testpeer.Command(tc.mode, tc.args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			code := 0
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// TestStartReady: StartReady returns once the peer said ready, with the
// rest of its output to read.
func TestStartReady(t *testing.T) {
	r := testpeer.StartReady(t, testpeer.Command("serve", "x"))
	if line, err := r.ReadString('\n'); err != nil || line != "served x\n" {
		t.Fatalf("after ready: %q %v", line, err)
	}
}

// TestCommandIn: the peer runs in the namespace it was given.
func TestCommandIn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs ip from iproute2: ", err)
	}
	ns := fmt.Sprintf("ustack-testpeer-%d", os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command(ip, "netns", "del", ns).Run()
	want, err := exec.Command(ip, "netns", "exec", ns, "readlink", "/proc/self/ns/net").Output()
	if err != nil {
		t.Fatal(err)
	}
	here, _ := os.Readlink("/proc/self/ns/net")
	got, err := testpeer.CommandIn(ns, "netns").Output()
	if err != nil || string(got) != string(want) || strings.TrimSpace(string(got)) == here {
		t.Fatalf("peer in %s is in %q (%v), want %q (the test is in %s)", ns, got, err, want, here)
	}
}
