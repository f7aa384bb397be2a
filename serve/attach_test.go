package serve_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/serve"
)

// TestAttachRefusesOtherFDs: POST /v1/attach takes only a seccomp
// listener. A pipe, a socket or a file handed over instead is refused with
// the reason, and left untouched: nothing is read from it or written to it.
func TestAttachRefusesOtherFDs(t *testing.T) {
	f := newFixture(t, "picky", serve.Config{Command: "daemon", Attach: true})
	ctx := ctxFor(t, 30*time.Second)

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	const waiting = "left in the pipe"
	if _, err := unix.Write(p[1], []byte(waiting)); err != nil {
		t.Fatal(err)
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()

	for _, tc := range []struct {
		name string
		fd   int
	}{
		{"pipe read end", p[0]},
		{"pipe write end", p[1]},
		{"unix socket", s},
		{"/dev/null", int(null.Fd())},
	} {
		att, err := f.client.OpenAttach(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = att.Hand(ctx, tc.fd)
		att.Close()
		if err == nil || !strings.Contains(err.Error(), "not a seccomp listener") {
			t.Errorf("attaching a %s: %v, want a refusal saying it is not a seccomp listener", tc.name, err)
		}
	}
	// Untouched: what was in the pipe is still there, and nothing more.
	buf := make([]byte, 64)
	n, err := unix.Read(p[0], buf)
	if err != nil || string(buf[:n]) != waiting {
		t.Errorf("the pipe holds %q (%v), want %q", buf[:n], err, waiting)
	}
	if r := runtimeOf(t, f.client); r.Attached != 0 {
		t.Errorf("the stack serves %d programs after refusing them all", r.Attached)
	}
}

// TestRunAttachedStackCloses: a program whose stack closes while it runs
// is killed by RunAttached, which says so (StackGoneError), even one that
// makes no socket call; a program that ends by itself is not reported.
func TestRunAttachedStackCloses(t *testing.T) {
	needPrograms(t, "sleep", "true")
	f := newFixture(t, "closing", serve.Config{Command: "daemon", Attach: true})
	ctx := ctxFor(t, 60*time.Second)
	ps, err := serve.RunAttached(ctx, f.client, serve.Program{Args: []string{"true"}, Logf: t.Logf})
	if err != nil || ps.ExitCode() != 0 {
		t.Fatalf("true: %v, %v", ps, err)
	}
	// The stack lets go of a program a moment after it exits; until then
	// it would count as the program below.
	testwait.For(t, "the stack to let go of true", func() bool { return runtimeOf(t, f.client).Attached == 0 })

	type result struct {
		ps  *os.ProcessState
		err error
	}
	done := make(chan result, 1)
	go func() {
		ps, err := serve.RunAttached(ctx, f.client, serve.Program{Args: []string{"sleep", "60"}, Logf: t.Logf})
		done <- result{ps, err}
	}()
	testwait.For(t, "the stack to serve the program", func() bool {
		select {
		case r := <-done:
			t.Fatalf("sleep ended before the stack closed: %v, %v", r.ps, r.err)
		default:
		}
		return runtimeOf(t, f.client).Attached != 0
	})
	f.close()
	select {
	case r := <-done:
		var gone *serve.StackGoneError
		if !errors.As(r.err, &gone) || gone.Name != "closing" {
			t.Errorf("RunAttached after the stack closed: %v, %v; want a StackGoneError", r.ps, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the program still runs 30s after its stack closed")
	}
}
