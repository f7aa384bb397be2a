package cli_test

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ustack/ustack/control/api"
)

var rttLine = regexp.MustCompile(`rtt min/avg/max/mdev = ([0-9.]+)/`)

// minPing pings the gateway from the daemon called name and returns the
// shortest round trip in ms.
func minPing(t *testing.T, env []string, name string) float64 {
	t.Helper()
	r := runUstack(t, env, "ping", "--stack", name, "-c", "5", "-i", "0.1", "10.0.2.2")
	m := rttLine.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("ping: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

var sentLine = regexp.MustCompile(`(?m)^dev eth0 egress: .*\n Sent (\d+) bytes (\d+) pkt \(dropped \d+: loss \d+, queue \d+, aqm \d+; duplicated \d+ corrupted \d+ reordered \d+ errors \d+\)\n backlog \d+b \d+p queued, \d+b \d+p in flight\n`)

// sentPackets runs link show and returns the egress packet count.
func sentPackets(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	r := runUstack(t, env, append([]string{"link", "show"}, args...)...)
	m := sentLine.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("link show %v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
	}
	n, _ := strconv.Atoi(m[2])
	return n, r.stdout
}

// TestLinkSet changes the link of a running daemon: a delay set with
// ustack link set lengthens the next ping's round trips, and link show's
// counters move with the traffic.
func TestLinkSet(t *testing.T) {
	runtimeDir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	startDaemon(t, runtimeDir, "shaped")

	before, out := sentPackets(t, env, "shaped")
	if !strings.HasPrefix(out, "dev eth0 egress: none\n") || !strings.Contains(out, "\ndev eth0 ingress: none\n") {
		t.Errorf("link show with nothing set:\n%s", out)
	}
	// NAME left out: the only stack; the direction and spec follow DEV.
	if r := runUstack(t, env, "link", "set", "eth0", "delay", "20ms"); r.code != 0 || r.stdout != "" {
		t.Fatalf("link set eth0 delay 20ms: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if rtt := minPing(t, env, "shaped"); rtt < 40 {
		t.Errorf("round trip %.3f ms with 20 ms each way", rtt)
	}
	after, out := sentPackets(t, env, "shaped", "eth0")
	if after < before+5 || !strings.Contains(out, "egress: delay 20ms (seed ") || !strings.Contains(out, "ingress: delay 20ms (seed ") {
		t.Errorf("link show after 5 pings (%d packets sent before):\n%s", before, out)
	}

	if r := runUstack(t, env, "link", "set", "shaped", "eth0", "out", "rate", "1mbit", "limit", "5", "seed", "9"); r.code != 0 {
		t.Fatalf("link set out: exit %d, stderr %q", r.code, r.stderr)
	}
	r := runUstack(t, env, "link", "show", "shaped", "--json")
	var reply api.LinkReply
	if err := json.Unmarshal([]byte(r.stdout), &reply); err != nil || r.code != 0 || len(reply.Links) != 1 {
		t.Fatalf("link show --json: exit %d, %v: %s", r.code, err, r.stdout)
	}
	if l := reply.Links[0]; l.Egress.Spec != "rate 1mbit limit 5 seed 9" || l.Egress.Seed != 9 || l.Ingress.Spec != "delay 20ms" {
		t.Errorf("after link set out: %+v", l)
	}
	if r := runUstack(t, env, "link", "set", "shaped", "eth0", "none"); r.code != 0 {
		t.Fatalf("link set none: exit %d, stderr %q", r.code, r.stderr)
	}
	if rtt := minPing(t, env, "shaped"); rtt >= 40 {
		t.Errorf("round trip %.3f ms after the delay was taken away", rtt)
	}
}

// TestLinkErrors: bad specs, devices, stacks and subcommands are one line
// naming what is wrong; usage errors exit 2.
func TestLinkErrors(t *testing.T) {
	runtimeDir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	startDaemon(t, runtimeDir, "d")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"link", "set", "d", "eth0", "delay"}, 2, "ustack: link set: delay: missing value"},
		{[]string{"link", "set", "d", "eth0", "limit", "10"}, 2, "ustack: link set: limit"},
		{[]string{"link", "set", "d", "eth0", "bandwidth", "1mbit"}, 2, `ustack: link set: "bandwidth": unknown keyword`},
		{[]string{"link", "set", "d", "eth0"}, 2, "ustack: link set: missing SPEC after eth0"},
		{[]string{"link", "set", "d", "eth1", "delay", "1ms"}, 2, `ustack: link set: dev: no NIC "eth1" with a link on this stack (NICs: eth0)`},
		{[]string{"link", "set", "nosuch", "eth0", "delay", "1ms"}, 1, "ustack: link set: no stack named nosuch is running"},
		{[]string{"link", "show", "d", "eth7"}, 2, `ustack: link show: dev: no NIC "eth7"`},
		{[]string{"link", "frob"}, 2, `ustack: link: "frob" is not set or show`},
		{[]string{"link"}, 2, "ustack: link: missing set or show"},
		{[]string{"daemon", "--name", "x", "--link", "delay 5"}, 2, "ustack: --link: delay: "},
		{[]string{"daemon", "--name", "x", "--link-in", "rate 1mbit", "--link-out", "limit 5"}, 2, "ustack: --link-out: limit"},
		{[]string{"run", "--stack", "d", "--link", "delay 1ms", "--", "true"}, 2, "ustack: --link: cannot be used with --stack"},
	} {
		r := runUstack(t, env, tc.args...)
		if line := oneLine(t, r); r.code != tc.code || !strings.HasPrefix(line, tc.want) {
			t.Errorf("ustack %s: exit %d, %q; want %d, %q", strings.Join(tc.args, " "), r.code, line, tc.code, tc.want)
		}
	}
}
