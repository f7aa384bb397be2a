package intercept

import (
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the launch helper.
func TestMain(m *testing.M) {
	if IsHelper() {
		HelperMain()
	}
	os.Exit(m.Run())
}

func TestExitStatusAndContinue(t *testing.T) {
	var calls atomic.Int32
	p, err := Start(Config{
		Path: "sh", Args: []string{"sh", "-c", "exit 7"},
		Stdout: os.Stdout, Stderr: os.Stderr,
		Handler: HandlerFunc(func(c *Call) { calls.Add(1); c.Continue() }),
		Logf:    t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := p.Wait()
	if st.ExitCode() != 7 {
		t.Fatalf("exit status %d, want 7", st.ExitCode())
	}
}

func TestSocketIsNotified(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	var sockets, unixSockets atomic.Int32
	p, err := Start(Config{
		Path: py, Args: []string{"python3", "-c", "import socket; socket.socket(); socket.socket(socket.AF_UNIX)"},
		Stdout: os.Stdout, Stderr: os.Stderr,
		Handler: HandlerFunc(func(c *Call) {
			if c.Nr() == unix.SYS_SOCKET {
				sockets.Add(1)
				if c.Arg(0) == unix.AF_UNIX {
					unixSockets.Add(1)
				}
			}
			c.Continue()
		}),
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := p.Wait()
	if st.ExitCode() != 0 {
		t.Fatalf("exit status %d", st.ExitCode())
	}
	if sockets.Load() != 1 || unixSockets.Load() != 0 {
		t.Fatalf("notified sockets: %d (AF_UNIX %d), want 1 AF_INET and no AF_UNIX", sockets.Load(), unixSockets.Load())
	}
}
