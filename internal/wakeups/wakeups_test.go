package wakeups

import (
	"bytes"
	"runtime/trace"
	"strings"
	"testing"
)

// pingPong hands a token to another goroutine and waits for it back, n
// times: 2n wake-ups, n by each side.
func pingPong(n int) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pongSend(pong, v)
		}
		close(pong)
	}()
	for i := 0; i < n; i++ {
		pingSend(ping, i)
		<-pong
	}
	close(ping)
	<-pong
}

//go:noinline
func pingSend(c chan int, v int) { c <- v }

//go:noinline
func pongSend(c chan int, v int) { c <- v }

func TestAnalyzeCountsHandOffs(t *testing.T) {
	const n = 500
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	pingPong(n)
	trace.Stop()

	ours := func(fn string) bool { return strings.Contains(fn, "internal/wakeups.p") }
	rep, err := Analyze(&buf, ours)
	if err != nil {
		t.Fatal(err)
	}
	// Every round trip parks one side at least once (the main goroutine
	// cannot have its answer before the other has run), and each park
	// ends in a wake-up by the other side: a send to a parked receiver, or
	// a receive from a parked sender. At most both sides park each time.
	var sum int
	for _, w := range rep.Wakers {
		if !ours(w.Func) {
			continue
		}
		if w.P50 < 0 || w.P90 < w.P50 || w.SameP > w.Count || w.Mean() < 0 {
			t.Errorf("%s: p50 %.1f, p90 %.1f, same P %d of %d", w.Func, w.P50, w.P90, w.SameP, w.Count)
		}
		sum += w.Count
	}
	if sum < n || sum > 2*n+2 {
		t.Errorf("%d wake-ups by the two sides in %d round trips, want %d to %d; wakers: %v", sum, n, n, 2*n+2, funcs(rep))
	}
	var out bytes.Buffer
	rep.Write(&out, 5, n)
	if !strings.Contains(out.String(), "per operation (500)") || !strings.Contains(out.String(), "wakeups.p") {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestAnalyzeRefusesGarbage(t *testing.T) {
	if _, err := Analyze(strings.NewReader("not a trace"), func(string) bool { return true }); err == nil {
		t.Error("a non-trace was read without error")
	}
}

func funcs(r *Report) []string {
	var s []string
	for _, w := range r.Wakers {
		s = append(s, w.Func)
	}
	return s
}
