package intercept

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testpeer"
	"golang.org/x/sys/unix"
)

// TestWardenKillsOrphans: a program whose stack goes away while it runs
// (here the stack's supervisor stops and its warden is let go, as when a
// daemon exits) is killed at its next socket call instead of getting
// ENOSYS forever; and the warden exits once no program is left, a program
// that ended while the stack lived holding nothing up.
func TestWardenKillsOrphans(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w, err := StartWarden("warden test")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cont := HandlerFunc(func(c *Call) { c.Continue() })

	// Served while the stack lives: it ends on its own.
	early, listener, err := Launch(Config{Path: "true", Args: []string{"true"}, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Watch(listener); err != nil {
		t.Fatal(err)
	}
	unix.Close(listener)
	if st, _ := early.Wait(); st.ExitCode() != 0 {
		t.Fatalf("true: %v", st)
	}

	// Waits for a line on stdin, then makes socket calls without end.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	p, listener, err := Launch(Config{
		Path: "sh", Args: []string{"sh", "-c", `read line && exec "$0" "$1"`, self, "1000000000"},
		Env:   append(os.Environ(), testpeer.EnvVar+"=socket-loop"),
		Stdin: stdinR, Stdout: os.Stdout, Stderr: os.Stderr,
	})
	stdinR.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Signal(syscall.SIGKILL)
	if err := w.Watch(listener); err != nil {
		t.Fatal(err)
	}
	sup, err := Serve(listener, cont, t.Logf)
	if err != nil {
		t.Fatal(err)
	}

	// The stack goes away.
	sup.Stop()
	w.Close()
	stdinW.WriteString("go\n")

	st, _ := p.Wait()
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the program whose stack went away: %v, want killed by SIGKILL", st)
	}
	select {
	case <-w.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("the warden is still running with no program left")
	}
}

// TestServeRefusesOtherFDs: Serve takes only a seccomp listener.
func TestServeRefusesOtherFDs(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := Serve(int(r.Fd()), HandlerFunc(func(c *Call) { c.Continue() }), t.Logf); err == nil {
		t.Fatal("Serve took a pipe")
	}
}
