package intercept

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testpeer"
)

// getsockoptLoop, the peer mode "getsockopt-loop N", makes N
// getsockopt(SO_TYPE) calls on a socket and prints the time per call in
// nanoseconds.
func getsockoptLoop(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	start := time.Now()
	for range n {
		unix.GetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_TYPE)
	}
	fmt.Println(time.Since(start).Nanoseconds() / int64(n))
	return nil
}

// BenchmarkNotifyFloor is the least an intercepted call costs with this
// package's loop: the handler answers every getsockopt at once, with no
// lookup and no access to the caller's memory. ns/op is the time per call
// as the calling program sees it.
func BenchmarkNotifyFloor(b *testing.B) {
	out, err := os.CreateTemp(b.TempDir(), "out")
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	prog := testpeer.Command("getsockopt-loop", strconv.Itoa(b.N))
	b.ResetTimer()
	p, err := Start(Config{
		Path: prog.Path, Args: prog.Args, Env: prog.Env,
		Stdout: out, Stderr: os.Stderr,
		Handler: answerAtOnce{},
		Logf:    b.Logf,
	})
	if err != nil {
		b.Fatal(err)
	}
	st, _ := p.Wait()
	b.StopTimer()
	text, _ := os.ReadFile(out.Name())
	ns, err := strconv.ParseFloat(string(text[:max(len(text)-1, 0)]), 64)
	if st.ExitCode() != 0 || err != nil {
		b.Fatalf("program: exit %d, output %q", st.ExitCode(), text)
	}
	b.ReportMetric(ns/1000, "µs/call")
}

// answerAtOnce answers getsockopt with 0 on the loop's thread (it never
// parks) and lets the kernel do every other call.
type answerAtOnce struct{}

func (answerAtOnce) MayPark(int) bool { return false }

func (answerAtOnce) Handle(c *Call) {
	if c.Nr() == unix.SYS_GETSOCKOPT {
		c.Return(0)
		return
	}
	c.Continue()
}
