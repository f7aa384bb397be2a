package intercept

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testprog"
)

// failingPoller fails every other wait, as Go's poller does after the
// kernel's poll of the listener said POLLERR on the poller's thread.
type failingPoller struct {
	syscall.RawConn
	reads atomic.Int32
}

func (f *failingPoller) Read(fn func(uintptr) bool) error {
	if f.reads.Add(1)%2 == 0 {
		return errors.New("not pollable")
	}
	return f.RawConn.Read(fn)
}

// TestPollerFailureLosesNoCall: when the poller fails, the loop takes the
// notifications on its own thread and every call is answered.
func TestPollerFailureLosesNoCall(t *testing.T) {
	py := testprog.Need(t, "python3")
	var fp *failingPoller
	wrapListener = func(rc syscall.RawConn) syscall.RawConn { fp = &failingPoller{RawConn: rc}; return fp }
	t.Cleanup(func() { wrapListener = func(rc syscall.RawConn) syscall.RawConn { return rc } })
	const n = 300
	var sockets atomic.Int32
	p, err := Start(Config{
		Path: py, Args: []string{"python3", "-c", "import socket, time\nfor i in range(300):\n    socket.socket().close()\n    if i % 50 == 0: time.sleep(0.02)"},
		Stdout: os.Stdout, Stderr: os.Stderr,
		Handler: HandlerFunc(func(c *Call) {
			if c.Nr() == unix.SYS_SOCKET {
				sockets.Add(1)
			}
			c.Continue()
		}),
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *os.ProcessState, 1)
	go func() { st, _ := p.Wait(); done <- st }()
	select {
	case st := <-done:
		if st.ExitCode() != 0 {
			t.Fatalf("exit status %d", st.ExitCode())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the program is still waiting for an answer after 60 s")
	}
	if got := sockets.Load(); got < n {
		t.Errorf("%d socket calls answered, want at least %d", got, n)
	}
	if fp.reads.Load() < 4 {
		t.Errorf("the poller was asked %d times: the failures were not exercised", fp.reads.Load())
	}
}
