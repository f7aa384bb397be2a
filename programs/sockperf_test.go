package programs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// sockperfReceived matches the line of 'sockperf pp' that counts the
// messages and replies of the measured part of the run (the total's count
// of replies is one short when the timer ends the run with one in flight).
var sockperfReceived = regexp.MustCompile(`\[Valid Duration\] RunTime=[0-9.]+ sec; SentMessages=(\d+); ReceivedMessages=(\d+)`)

// checkSockperf checks that a 'sockperf pp' run measured something: replies
// came back, none was lost, and it printed its latency summary.
func checkSockperf(t *testing.T, out string) {
	t.Helper()
	m := sockperfReceived.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("sockperf pp printed no message counts:\n%s", tail(out))
	}
	sent, _ := strconv.Atoi(m[1])
	received, _ := strconv.Atoi(m[2])
	if received == 0 || received != sent {
		t.Fatalf("sockperf pp sent %d messages and got %d back:\n%s", sent, received, tail(out))
	}
	if !regexp.MustCompile(`# dropped messages = 0;`).MatchString(out) {
		t.Fatalf("sockperf pp reports dropped messages:\n%s", tail(out))
	}
	if !regexp.MustCompile(`Summary: Latency is [0-9.]+ usec`).MatchString(out) {
		t.Fatalf("sockperf pp printed no latency summary:\n%s", tail(out))
	}
}

// TestSockperf: sockperf's TCP ping-pong under 'ustack run'. sockperf's
// client sends with sendto() and the server's address on its connected
// TCP socket, which Linux ignores; both the client alone (against a server
// on the host) and client and server together in one stack must finish
// with results.
func TestSockperf(t *testing.T) {
	need(t, "sockperf")
	t.Run("client under run", func(t *testing.T) {
		port := freePort(t)
		srv := start(t, nil, "sockperf", "sr", "--tcp", "-i", "127.0.0.1", "-p", fmt.Sprint(port))
		srv.waitOutput("listen on")
		p := run(t, nil, "sockperf", "pp", "--tcp", "-i", "10.0.2.2", "-p", fmt.Sprint(port), "-t", "2")
		p.mustSucceed(60 * time.Second)
		checkSockperf(t, p.stdout.String())
	})
	t.Run("client and server under run", func(t *testing.T) {
		need(t, "sh")
		need(t, "grep")
		dir := t.TempDir()
		srvLog, out := filepath.Join(dir, "server.log"), filepath.Join(dir, "client.log")
		script := fmt.Sprintf(`sockperf sr --tcp -i 127.0.0.1 -p 11111 > %[1]s 2>&1 & pid=$!
n=0; until grep -q "listen on" %[1]s; do n=$((n+1)); [ $n -gt 300 ] && exit 3; sleep 0.1; done
sockperf pp --tcp -i 127.0.0.1 -p 11111 -t 2 > %[2]s 2>&1; rc=$?; kill $pid; wait $pid; exit $rc`, srvLog, out)
		p := run(t, nil, "sh", "-c", script)
		code := p.wait(60 * time.Second)
		client, _ := os.ReadFile(out)
		if code != 0 {
			server, _ := os.ReadFile(srvLog)
			t.Fatalf("exit %d; client:\n%s\nserver:\n%s\nustack's stderr:\n%s", code, tail(string(client)), tail(string(server)), tail(p.stderr.String()))
		}
		checkSockperf(t, string(client))
	})
}
