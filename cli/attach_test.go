package cli_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// TestRunAttached: programs run with --stack share the daemon's stack. A
// server started by one 'ustack run --stack' (which returns while the
// server goes on in the background) is reached by curl from another,
// through 127.0.0.1, ::1 and the stack's own addresses; the host does not
// see it.
func TestRunAttached(t *testing.T) {
	for _, prog := range []string{"python3", "curl", "sh"} {
		testprog.Need(t, prog)
	}
	runtimeDir := t.TempDir()
	startDaemon(t, runtimeDir, "shared")
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	dir := t.TempDir()
	r := runUstack(t, env, "run", "--stack", "shared", "--", "sh", "-c",
		"cd "+dir+" && echo attached > index.html && exec python3 -m http.server 8123 >/dev/null 2>&1 &")
	if r.code != 0 {
		t.Fatalf("starting the server: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { exec.Command("pkill", "-f", "http.server 8123").Run() })
	// The run returned once python was started, not once it listens.
	listener := regexp.MustCompile(`(?m)^tcp +LISTEN +\S+ +\S+ +\S+:8123 `)
	testwait.ForNil(t, "python's listener on the shared stack", func() error {
		if r = runUstack(t, env, "ss", "-tln", "shared"); !listener.MatchString(r.stdout) {
			return fmt.Errorf("ss -tln: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	for _, host := range []string{"127.0.0.1", "[::1]", "10.0.2.15", "[fd00::15]"} {
		r = runUstack(t, env, "run", "--stack", "shared", "--", "curl", "-sS", "--max-time", "5", "http://"+host+":8123/index.html")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "attached" {
			t.Fatalf("curl http://%s:8123/ on the shared stack: exit %d, body %q, stderr %s", host, r.code, r.stdout, r.stderr)
		}
	}
	// The server is the stack's, not the host's.
	out, _ := exec.Command("curl", "-sS", "--max-time", "2", "http://127.0.0.1:8123/index.html").CombinedOutput()
	if bytes.Contains(out, []byte("attached")) {
		t.Error("the host reached the server of the user-level stack on its own loopback")
	}
}

// TestRunAttachedErrors: --stack with stack flags is a usage error; with
// no daemon it is one line naming the fix, and the program does not run.
func TestRunAttachedErrors(t *testing.T) {
	env := []string{"XDG_RUNTIME_DIR=" + t.TempDir()}
	r := runUstack(t, env, "run", "--stack", "none", "--cc", "reno", "--", "true")
	if r.code != 2 || !strings.HasPrefix(oneLine(t, r), "ustack: --cc: cannot be used with --stack") {
		t.Errorf("run --stack with --cc: exit %d, stderr %q", r.code, r.stderr)
	}
	marker := t.TempDir() + "/ran"
	r = runUstack(t, env, "run", "--stack", "none", "--", "touch", marker)
	if r.code != 1 || !strings.Contains(oneLine(t, r), "no daemon is running") {
		t.Errorf("run --stack with no daemon: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := exec.Command("test", "-e", marker).CombinedOutput(); err == nil {
		t.Error("the program ran although no daemon served its sockets")
	}
}
