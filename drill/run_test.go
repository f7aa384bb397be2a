package drill

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const handshake = `0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  bind(3, ..., ...) = 0
+0  listen(3, 10) = 0
+0  < S 0:0(0) win 65535 <mss 1000>
+0  > S. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 65535
+0  accept(3, ..., ...) = 4
`

// TestRunErrors: every way a script can fail says so, with the script's
// line and what was expected and what happened; nothing unsupported
// passes silently.
func TestRunErrors(t *testing.T) {
	rn := NewRunner(DefaultConfig(), t.Logf)
	defer rn.Close()
	dir := t.TempDir()
	for i, c := range []struct {
		name, script string
		want         []string
	}{
		{"mismatch", handshake + "+0  write(4, ..., 10) = 10\n+0  > P. 1:11(10) ack 1 win 7\n",
			[]string{":9: error handling packet: live packet field tcp_window: expected: 7 (0x7) vs actual:",
				"script packet:  0.100000 P. 1:11(10) ack 1 win 7", "actual packet:  0.100000 P. 1:11(10) ack 1 win"}},
		{"early", handshake + "+0  write(4, ..., 10) = 10\n+.2 > P. 1:11(10) ack 1\n",
			[]string{":9: error handling packet: timing error: expected outbound packet at 0.300000 sec but happened at 0.100000 sec; tolerance 0.025000 sec"}},
		{"missing", handshake + "+.1 > P. 1:11(10) ack 1\n",
			[]string{":8: error handling packet: expected an outbound packet at 0.200000 sec (tolerance 0.012500 sec) but none was sent by 0.212500 sec"}},
		{"result", handshake + "+0  read(4, ..., 10) = 5\n",
			[]string{":8: runtime error in read call: the call blocked and nothing due can end it"}},
		{"errno", "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 connect(3, ..., ...) = -1 ECONNREFUSED (Connection refused)\n+0 > S 0:0(0) <...>\n",
			[]string{"runtime error in connect call: Expected errno 111 (ECONNREFUSED) but got 110 (ETIMEDOUT)"}},
		{"code", handshake + "+0  %{ assert tcpi_snd_cwnd == 10 }%\n",
			[]string{":8: %{ code }% blocks are not supported"}},
		{"syscall", handshake + "+0  epoll_create(1) = 5\n",
			[]string{":8: runtime error in epoll_create call: Unknown system call: 'epoll_create'"}},
		{"command", handshake + "+0  `tc qdisc add dev tun0 root netem delay 10ms`\n",
			[]string{":8: error executing command: shell command \"tc qdisc add dev tun0 root netem delay 10ms\" cannot run under ustack"}},
		{"sysctl", "`sysctl -q net.ipv4.tcp_ecn=1`\n" + handshake,
			[]string{"error executing init command: shell command \"sysctl -q net.ipv4.tcp_ecn=1\": ustack cannot set net.ipv4.tcp_ecn to 1"}},
		{"ecr", handshake + "+0  < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 1 ecr 99>\n",
			[]string{":8: error handling packet: unable to infer live TS ecr for script TS ecr 99"}},
		{"first", "+1 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n",
			[]string{":1: first event should be at time 0"}},
		{"backwards", "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n1 close(3) = 0\n0.5 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n",
			[]string{":3: time goes backward in script from 1000000 usec to 500000 usec"}},
		{"option", "--wire_client\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n",
			[]string{"line 1: --wire_client: unknown option"}},
	} {
		path := filepath.Join(dir, c.name+".pkt")
		if err := os.WriteFile(path, []byte(c.script), 0o644); err != nil {
			t.Fatal(err)
		}
		r := rn.Run(path, "ustack")
		if r.Err == nil {
			t.Errorf("%d %s: passed, want a failure", i, c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.Err.Error(), w) {
				t.Errorf("%d %s: error\n%v\nlacks %q", i, c.name, r.Err, w)
			}
		}
	}
}
