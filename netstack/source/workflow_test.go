package source_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
)

// TestEditWorkflow goes through the documented edit-and-rerun workflow on a
// copy of its own (NETSTACK_COPY), so that builds of other packages never
// see its change: make the copy editable, change a constant of netstack's
// TCP (MaxRTO, which ustack's --sysctl check reports), rebuild ustack from
// it, and check that the change is in effect, that ustack version says the
// netstack is modified with the hash scripts/netstack.sh prints, and that
// reset brings the copy back to pinned + patches.
func TestEditWorkflow(t *testing.T) {
	testbin.EndToEnd(t)
	testprog.Need(t, "git")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts", "netstack.sh")
	tmp := t.TempDir()
	// The copy's directory is part of what the build cache keys compiled
	// packages by: a fixed one (git-ignored) lets a second run reuse them.
	copyDir := filepath.Join(root, ".netstack", "workflow-test", "gvisor")
	if err := os.RemoveAll(filepath.Dir(copyDir)); err != nil {
		exec.Command("chmod", "-R", "u+w", filepath.Dir(copyDir)).Run()
		if err := os.RemoveAll(filepath.Dir(copyDir)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(copyDir), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("chmod", "-R", "u+w", filepath.Dir(copyDir)).Run()
		os.RemoveAll(filepath.Dir(copyDir))
	})
	run := func(env []string, name string, args ...string) (string, string, error) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	must := func(env []string, name string, args ...string) string {
		t.Helper()
		out, errs, err := run(env, name, args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, errs)
		}
		return out
	}
	own := []string{"NETSTACK_COPY=" + copyDir}

	// The build's copy is current; clone it rather than make another from
	// the module cache (same content, a second faster).
	must(nil, script, "sync")
	must(nil, "git", "clone", "-q", filepath.Join(root, ".netstack", "gvisor"), copyDir)
	fp, err := os.ReadFile(filepath.Join(root, ".netstack", "gvisor.fingerprint"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyDir+".fingerprint", fp, 0o644); err != nil {
		t.Fatal(err)
	}

	if got := strings.TrimSpace(must(own, script, "edit")); got != copyDir {
		t.Fatalf("edit printed %q, want the copy %q", got, copyDir)
	}
	if h := strings.TrimSpace(must(own, script, "hash")); h != "" {
		t.Fatalf("hash of the unchanged copy is %q, want none", h)
	}
	snd := filepath.Join(copyDir, "pkg/tcpip/transport/tcp/snd.go")
	src, err := os.ReadFile(snd)
	if err != nil {
		t.Fatal(err)
	}
	const from, to = "MaxRTO = 120 * time.Second", "MaxRTO = 121 * time.Second"
	if !bytes.Contains(src, []byte(from)) {
		t.Fatalf("%s has no %q to change", snd, from)
	}
	if err := os.WriteFile(snd, bytes.Replace(src, []byte(from), []byte(to), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimSpace(must(own, script, "hash"))
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(hash) {
		t.Fatalf("hash of the changed copy is %q", hash)
	}

	// Build against the copy with a go.mod of the test's own.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	gomod = regexp.MustCompile(`(?m)^replace gvisor\.dev/gvisor => .*$`).ReplaceAll(gomod, []byte("replace gvisor.dev/gvisor => "+copyDir))
	gosum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	modfile := filepath.Join(tmp, "go.mod")
	os.WriteFile(modfile, gomod, 0o644)
	os.WriteFile(filepath.Join(tmp, "go.sum"), gosum, 0o644)
	bin := filepath.Join(tmp, "ustack")
	must(nil, "go", "build", "-modfile", modfile, "-o", bin, "./cmd/ustack")

	version := must(nil, bin, "version")
	if !strings.Contains(version, "modified "+hash+" (transport/tcp/snd.go)") {
		t.Fatalf("ustack version does not report the change %s:\n%s", hash, version)
	}
	// The changed constant is in effect: the --sysctl check names it.
	_, errs, err := run(nil, bin, "fetch", "--sysctl", "tcp.min_rto=300s", "http://10.0.2.2:1/")
	if err == nil || !strings.Contains(errs, "want at most 2m1s") {
		t.Fatalf("ustack fetch --sysctl tcp.min_rto=300s: %v, stderr %q; want the changed maximum 2m1s", err, errs)
	}

	must(own, script, "reset")
	if h := strings.TrimSpace(must(own, script, "hash")); h != "" {
		t.Fatalf("hash after reset is %q, want none", h)
	}
	if src2, _ := os.ReadFile(snd); !bytes.Equal(src2, src) {
		t.Fatal("reset did not restore snd.go")
	}
}
