package programs_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// iperfResult is the part of iperf3 -J's output the tests read.
type iperfResult struct {
	End struct {
		SumSent struct {
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf parses iperf3 -J's output and checks that data moved and
// that iperf3 reported no error (an option it could not read, such as
// TCP_INFO, is reported as an error too).
func parseIperf(t testing.TB, out []byte) iperfResult {
	t.Helper()
	r := parseIperfJSON(t, out)
	if r.Error != "" {
		t.Errorf("iperf3 reported an error: %q (the kernel's sockets give none)", r.Error)
	}
	return r
}

// parseIperfJSON parses iperf3 -J's output and checks that data moved.
func parseIperfJSON(t testing.TB, out []byte) iperfResult {
	t.Helper()
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("iperf3 -J output does not parse: %v\n%s", err, tail(string(out)))
	}
	if r.End.SumSent.Bytes <= 0 || r.End.SumReceived.Bytes <= 0 {
		t.Fatalf("iperf3 moved %d bytes sent, %d received; error %q", r.End.SumSent.Bytes, r.End.SumReceived.Bytes, r.Error)
	}
	return r
}

// hostIperf3 starts 'iperf3 -s -1' on the host's loopback and returns its
// port once it listens.
func hostIperf3(t testing.TB) int {
	t.Helper()
	port := freePort(t)
	srv := start(t, nil, "iperf3", "-s", "-1", "--forceflush", "-B", "127.0.0.1", "-p", fmt.Sprint(port))
	srv.waitOutput("Server listening")
	return port
}

// TestIperf3OneStack: iperf3's server and client in one 'ustack run', over
// the stack's loopback. The client starts once the server says it listens;
// the server (-1) ends after that one test. Both write to files the
// failure message shows, so a hang says which side was waiting.
func TestIperf3OneStack(t *testing.T) {
	need(t, "iperf3")
	need(t, "sh")
	need(t, "grep")
	dir := t.TempDir()
	out, srvLog := filepath.Join(dir, "out.json"), filepath.Join(dir, "server.log")
	script := fmt.Sprintf(`iperf3 -s -1 -p 5201 --forceflush > %[2]s 2>&1 & pid=$!
n=0; until grep -q "Server listening" %[2]s; do n=$((n+1)); [ $n -gt 300 ] && exit 3; sleep 0.1; done
iperf3 -c 127.0.0.1 -p 5201 -t 3 -J > %[1]s; rc=$?; wait $pid; exit $rc`, out, srvLog)
	p := run(t, nil, "sh", "-c", script)
	sides := func() string {
		client, _ := os.ReadFile(out)
		server, _ := os.ReadFile(srvLog)
		return fmt.Sprintf("client's JSON:\n%s\nserver's output:\n%s\nustack's stderr:\n%s", tail(string(client)), tail(string(server)), tail(p.stderr.String()))
	}
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		state := sides()
		p.kill()
		t.Fatalf("still running after 90 s; %s", state)
	}
	if code := p.wait(time.Second); code != 0 {
		t.Fatalf("exit %d; %s", code, sides())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r := parseIperf(t, b)
	t.Logf("iperf3 over the stack's loopback: %.2f Gbit/s", r.End.SumReceived.BitsPerSecond/1e9)
}

// TestIperf3ToHost: the iperf3 client under 'ustack run' against an iperf3
// server on the host through 10.0.2.2, each way (-R: the host sends). The
// kernel subtest is the control: the same client straight to 127.0.0.1,
// where iperf3 reports no error.
func TestIperf3ToHost(t *testing.T) {
	need(t, "iperf3")
	for _, c := range []struct {
		name  string
		run   bool
		flags []string
	}{
		{"stack sends", true, nil},
		{"host sends (-R)", true, []string{"-R"}},
		{"kernel", false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := hostIperf3(t)
			host := "127.0.0.1"
			if c.run {
				host = "10.0.2.2"
			}
			args := append([]string{"iperf3", "-c", host, "-p", fmt.Sprint(port), "-t", "2", "-J"}, c.flags...)
			var p *proc
			if c.run {
				p = run(t, nil, args...)
			} else {
				p = start(t, nil, args[0], args[1:]...)
			}
			code := p.wait(60 * time.Second)
			r := parseIperf(t, []byte(p.stdout.String()))
			if code != 0 {
				t.Fatalf("iperf3 exited %d; stderr:\n%s", code, p.stderr.String())
			}
			t.Logf("iperf3 to %s: %.2f Gbit/s", host, r.End.SumReceived.BitsPerSecond/1e9)
		})
	}
}
