package cli_test

// Tests of ls, ss, stats, /metrics and top against real stacks: a daemon
// whose CONNECT tunnel carries a TCP connection to a host server, and
// 'ustack run' with python3 listening on the stack.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// holdServer accepts connections on the host's loopback, sends each one
// size bytes and keeps it open until the test ends.
func holdServer(t *testing.T, size int) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				c.Write(make([]byte, size))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// tunnel opens a TCP connection from the daemon's stack to 10.0.2.2:port
// (HTTP CONNECT on the control socket), writes out and reads in bytes.
func tunnel(t *testing.T, sock string, port, out, in int) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	target := fmt.Sprintf("10.0.2.2:%d", port)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	if _, err := c.Write(make([]byte, out)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(br, make([]byte, in)); err != nil {
		t.Fatal(err)
	}
	return c
}

type ssSocket struct {
	Netid, State string
	RecvQ        *int `json:"recv_q"`
	Local, Peer  struct {
		IP   string
		Port int
	}
	TCP *struct {
		CC       string  `json:"cc"`
		RTOMs    float64 `json:"rto_ms"`
		RTTMs    float64 `json:"rtt_ms"`
		Cwnd     int     `json:"cwnd"`
		SegsOut  int     `json:"segs_out"`
		SegsIn   int     `json:"segs_in"`
		Retrans  int     `json:"retrans"`
		Timeouts int     `json:"timeouts"`
	}
}

func TestSSAndStats(t *testing.T) {
	runtimeDir := t.TempDir()
	xdg := "XDG_RUNTIME_DIR=" + runtimeDir
	metricsPort := closedPort(t)
	d := startDaemon(t, runtimeDir, "ssd", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", metricsPort))
	port := holdServer(t, 300_000)
	tunnel(t, d.sock, port, 200_000, 300_000)

	// ss -tni with no NAME: the only stack running. The first look already
	// has the control block (wscale, the sequence numbers).
	r := runUstack(t, []string{xdg}, "ss", "-tni")
	if r.code != 0 {
		t.Fatalf("ss -tni: exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	header := regexp.MustCompile(`^Netid +State +Recv-Q +Send-Q +Local Address:Port +Peer Address:Port +Process$`)
	if !header.MatchString(lines[0]) {
		t.Errorf("header %q", lines[0])
	}
	row := regexp.MustCompile(`^tcp +ESTAB +0 +\S+ +10\.0\.2\.15:(\d+) +10\.0\.2\.2:` + strconv.Itoa(port) + `$`)
	var found bool
	for i, l := range lines {
		if m := row.FindStringSubmatch(l); m != nil {
			found = true
			if i+1 >= len(lines) || !regexp.MustCompile(`^\t reno wscale:\d+,\d+ rto:\d+(\.\d+)? rtt:[0-9.]+/[0-9.]+ .*cwnd:\d+ .*segs_out:\d+ segs_in:\d+ .*reno:\(cwnd:[0-9.]+\) .*snd_una:\d+ snd_nxt:\d+ rcv_nxt:\d+$`).MatchString(lines[i+1]) {
				t.Errorf("no -i line after %q: %q", l, lines)
			}
		}
	}
	if !found {
		t.Fatalf("ss -tni lacks the connection to 10.0.2.2:%d:\n%s", port, r.stdout)
	}
	// The JSON agrees and its values are those of a connection that moved
	// 200 kB out and 300 kB in without loss.
	r = runUstack(t, []string{xdg}, "ss", "--json", "ssd")
	var socks []ssSocket
	if err := json.Unmarshal([]byte(r.stdout), &socks); err != nil || r.code != 0 {
		t.Fatalf("ss --json: %v, exit %d, %q", err, r.code, r.stderr)
	}
	if len(socks) != 1 || socks[0].TCP == nil {
		t.Fatalf("ss --json: %+v", socks)
	}
	s := socks[0]
	if s.Netid != "tcp" || s.State != "ESTAB" || s.Local.IP != "10.0.2.15" || s.Peer.IP != "10.0.2.2" || s.Peer.Port != port || s.RecvQ == nil || *s.RecvQ != 0 {
		t.Errorf("socket %+v", s)
	}
	ti := s.TCP
	// 200 kB at an MSS below 64 KiB is at least 4 segments out; 300 kB in
	// at least 5 segments; RTO is at least the 200 ms minimum. Without
	// loss, cwnd has grown from its initial 10. On a loaded machine the
	// link to the gateway may drop a frame (its queue is bounded); ss then
	// shows the retransmission and a smaller cwnd, as it should.
	minCwnd, maxTimeouts := 10, 0
	if ti.Retrans > 0 {
		t.Logf("the transfer lost a segment on the way: %+v", *ti)
		minCwnd, maxTimeouts = 1, ti.Retrans
	}
	if ti.CC != "reno" || ti.RTOMs < 200 || ti.RTTMs <= 0 || ti.Cwnd < minCwnd || ti.SegsOut < 4 || ti.SegsIn < 5 || ti.Timeouts > maxTimeouts {
		t.Errorf("tcp info %+v", *ti)
	}

	// ss without -a hides listeners; the daemon has none, -l shows none.
	r = runUstack(t, []string{xdg}, "ss", "-l", "ssd")
	if n := strings.Count(r.stdout, "\n"); r.code != 0 || n != 1 {
		t.Errorf("ss -l on a stack without listeners: exit %d, %q", r.code, r.stdout)
	}

	// ls shows the stack with its connection.
	r = runUstack(t, []string{xdg}, "ls")
	if !regexp.MustCompile(`(?m)^ssd +` + strconv.Itoa(d.cmd.Process.Pid) + ` +nat +10\.0\.2\.15/24,fd00::15/64 +1$`).MatchString(r.stdout) {
		t.Errorf("ls:\n%s", r.stdout)
	}

	// stats: nonzero TCP counters, zeros only with -z.
	r = runUstack(t, []string{xdg}, "stats", "ssd")
	counters := map[string]int{}
	for _, l := range strings.Split(r.stdout, "\n")[1:] {
		if f := strings.Fields(l); len(f) == 2 {
			counters[f[0]], _ = strconv.Atoi(f[1])
		}
	}
	if counters["TcpActiveConnectionOpenings"] != 1 || counters["TcpSegmentsSent"] < 4 || counters["TcpValidSegmentsReceived"] < 5 ||
		counters["TcpCurrentEstablished"] != 1 || counters["NicRxBytes{nic=eth0}"] < 300_000 {
		t.Errorf("stats:\n%s", r.stdout)
	}
	for k, v := range counters {
		if v == 0 {
			t.Errorf("stats without -z shows %s 0", k)
		}
	}
	rz := runUstack(t, []string{xdg}, "stats", "-z", "ssd")
	if !strings.Contains(rz.stdout, "\nTcpTimeouts ") || len(rz.stdout) <= len(r.stdout) {
		t.Errorf("stats -z lacks the zero counters:\n%s", rz.stdout)
	}

	// /metrics, on the control socket and on --metrics-addr, parses.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.sock)
	}}}
	for _, url := range []string{"http://ustack/metrics", fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)} {
		c := client
		if !strings.HasPrefix(url, "http://ustack") {
			c = http.DefaultClient
		}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		f := families["ustack_tcp_active_connection_openings_total"]
		if f == nil || len(f.Metric) != 1 || f.Metric[0].GetCounter().GetValue() != 1 {
			t.Fatalf("%s: ustack_tcp_active_connection_openings_total %v", url, f)
		}
		if l := f.Metric[0].Label; len(l) != 1 || l[0].GetName() != "stack" || l[0].GetValue() != "ssd" {
			t.Errorf("%s: labels %v", url, l)
		}
		if g := families["ustack_tcp_current_established"]; g == nil || g.Metric[0].GetGauge().GetValue() != 1 {
			t.Errorf("%s: ustack_tcp_current_established %v", url, g)
		}
		if len(families) < 50 {
			t.Errorf("%s: only %d metric families", url, len(families))
		}
	}
}

// A listener of a program under 'ustack run' is listed by ss -l, not by
// plain ss; the run's socket goes away with it.
func TestSSListenerUnderRun(t *testing.T) {
	testbin.EndToEnd(t)
	python := testprog.Need(t, "python3")
	runtimeDir := t.TempDir()
	xdg := "XDG_RUNTIME_DIR=" + runtimeDir
	cmd := exec.Command(ustackBin, "run", "--name", "web", "--", python, "-m", "http.server", "8123", "--bind", "0.0.0.0")
	cmd.Env = cleanEnv(xdg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); <-done }()

	listener := regexp.MustCompile(`(?m)^tcp +LISTEN +\S+ +\S+ +0\.0\.0\.0:8123 +0\.0\.0\.0:\*`)
	var r result
	testwait.ForNil(t, "ss -ln to show python's listener", func() error {
		if r = runUstack(t, []string{xdg}, "ss", "-ln", "web"); !listener.MatchString(r.stdout) {
			return fmt.Errorf("exit %d %q %q; run's stderr %q", r.code, r.stdout, r.stderr, stderr.String())
		}
		return nil
	})
	if r = runUstack(t, []string{xdg}, "ss", "-n", "web"); strings.Contains(r.stdout, "LISTEN") {
		t.Errorf("ss without -l or -a shows a listener:\n%s", r.stdout)
	}
	if r = runUstack(t, []string{xdg}, "ss", "-tan", "web"); !listener.MatchString(r.stdout) {
		t.Errorf("ss -a lacks the listener:\n%s", r.stdout)
	}
	// The run's stack is named on the control socket.
	r = runUstack(t, []string{xdg}, "ls", "--json")
	var infos []struct {
		Name, Command string
		PID           int
	}
	if json.Unmarshal([]byte(r.stdout), &infos); len(infos) != 1 || infos[0].Name != "web" || infos[0].Command != "run" || infos[0].PID != cmd.Process.Pid {
		t.Errorf("ls --json: %s", r.stdout)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ustack run did not end after SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(runtimeDir, "ustack", "web.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run's control socket is still there after it ended: %v", err)
	}
}

// ls leaves out a daemon killed by SIGKILL and removes its socket.
func TestLsAfterSIGKILL(t *testing.T) {
	runtimeDir := t.TempDir()
	xdg := "XDG_RUNTIME_DIR=" + runtimeDir
	live := startDaemon(t, runtimeDir, "live")
	dead := startDaemon(t, runtimeDir, "dead")
	dead.cmd.Process.Kill()
	<-dead.done
	dead.done <- nil // for the cleanup
	if _, err := os.Stat(dead.sock); err != nil {
		t.Fatalf("the killed daemon's socket should still be there before ls: %v", err)
	}
	r := runUstack(t, []string{xdg}, "ls")
	if r.code != 0 || strings.Contains(r.stdout, "dead") || !strings.Contains(r.stdout, "live") {
		t.Errorf("ls: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(dead.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed daemon's socket was not removed: %v", err)
	}
	if _, err := os.Stat(live.sock); err != nil {
		t.Errorf("the live daemon's socket was removed: %v", err)
	}
	// Its name is free again.
	startDaemon(t, runtimeDir, "dead")
}

func TestInspectUsageErrors(t *testing.T) {
	runtimeDir := t.TempDir()
	xdg := "XDG_RUNTIME_DIR=" + runtimeDir
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ss unknown flag", []string{"ss", "-X"}, 2, "-X: unknown flag"},
		{"ss two names", []string{"ss", "a", "b"}, 2, `ss: unexpected argument "b"`},
		{"ss bad name", []string{"ss", "../x"}, 2, `ss: "../x" is not a stack name`},
		{"ss no stack", []string{"ss"}, 1, "ss: no stack is running"},
		{"stats no such stack", []string{"stats", "nosuch"}, 1, "stats: no stack named nosuch is running"},
		{"top no such stack", []string{"top", "nosuch"}, 1, "top: no stack named nosuch is running"},
		{"bad metrics addr", []string{"daemon", "--name", "m", "--metrics-addr", "bogus"}, 2, `--metrics-addr: "bogus" is not HOST:PORT`},
		{"bad metrics host", []string{"daemon", "--name", "m", "--metrics-addr", "nohost:80"}, 2, `--metrics-addr: "nohost:80": host`},
		{"run bad name", []string{"run", "--name", "a/b", "true"}, 2, `--name: "a/b" is not a valid name`},
		{"ls argument", []string{"ls", "x"}, 2, `ls: unexpected argument "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runUstack(t, []string{xdg}, tc.args...)
			if line := oneLine(t, r); r.code != tc.code || !strings.HasPrefix(line, "ustack: "+tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, line, tc.code, tc.want)
			}
		})
	}
	// With two stacks, ss wants a name; a name taken by a daemon is
	// refused to run.
	startDaemon(t, runtimeDir, "one")
	startDaemon(t, runtimeDir, "two")
	r := runUstack(t, []string{xdg}, "ss")
	if line := oneLine(t, r); r.code != 2 || !strings.Contains(line, "2 stacks are running (one, two)") {
		t.Errorf("ss with two stacks: exit %d, %q", r.code, line)
	}
	r = runUstack(t, []string{xdg}, "run", "--name", "one", "true")
	if line := oneLine(t, r); r.code != 2 || !strings.Contains(line, "--name: a stack named one is already running") {
		t.Errorf("run with a taken name: exit %d, %q", r.code, line)
	}
}

// ustack top runs in a real terminal (tmux), shows the connection, and q
// ends it with the terminal restored.
func TestTopInTmux(t *testing.T) {
	tmux := testprog.Need(t, "tmux")
	runtimeDir := t.TempDir()
	d := startDaemon(t, runtimeDir, "tops")
	port := holdServer(t, 10_000)
	tunnel(t, d.sock, port, 1000, 10_000)

	session := fmt.Sprintf("ustack-top-test-%d", os.Getpid())
	socket := filepath.Join(t.TempDir(), "tmux.sock") // a tmux server of our own
	tm := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-S", socket}, args...)...).CombinedOutput()
		return string(out), err
	}
	cmdline := fmt.Sprintf("env XDG_RUNTIME_DIR=%s TERM=xterm-256color %s top tops", runtimeDir, ustackBin)
	if out, err := tm("new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmdline); err != nil {
		t.Fatalf("tmux new-session: %v %s", err, out)
	}
	t.Cleanup(func() { tm("kill-server") })
	tm("set-option", "-t", session, "remain-on-exit", "on")

	peer := fmt.Sprintf("10.0.2.2:%d", port)
	var screen string
	testwait.ForNil(t, "top to show the connection to "+peer, func() error {
		screen, _ = tm("capture-pane", "-p", "-t", session)
		if strings.Contains(screen, "ustack top tops: 1 connections") && strings.Contains(screen, peer) && strings.Contains(screen, "segs_out") {
			return nil
		}
		return fmt.Errorf("the screen shows:\n%s", screen)
	})
	for i, l := range strings.Split(strings.TrimSuffix(screen, "\n"), "\n") {
		if len([]rune(l)) > 80 || i >= 24 {
			t.Errorf("line %d does not fit 80x24: %q", i, l)
		}
	}
	tm("send-keys", "-t", session, "j", "s", "Space")
	testwait.ForNil(t, "space to pause top", func() error {
		if screen, _ = tm("capture-pane", "-p", "-t", session); !strings.Contains(screen, "PAUSED") {
			return fmt.Errorf("the screen shows:\n%s", screen)
		}
		return nil
	})
	tm("send-keys", "-t", session, "q")
	testwait.ForNil(t, "top to exit 0 and leave the alternate screen after q", func() error {
		// pane_dead_status is empty on older tmux; "0" when it knows.
		dead, _ := tm("display-message", "-p", "-t", session, "#{pane_dead},#{alternate_on},#{pane_dead_status}")
		if f := strings.Split(strings.TrimSpace(dead), ","); len(f) == 3 && f[0] == "1" && f[1] == "0" && (f[2] == "" || f[2] == "0") {
			return nil
		}
		return fmt.Errorf("dead,alternate,status: %q", dead)
	})
	if screen, _ = tm("capture-pane", "-p", "-t", session); strings.Contains(screen, "ustack top") {
		t.Errorf("the screen was not restored after q:\n%s", screen)
	}
}

// bytesProgram makes two connected sockets on 127.0.0.1, moves a known
// number of bytes each way (the server leaves part of what it got unread),
// prints each socket's local port and TCP_INFO fields (bytes_received, ca_state,
// rto and rtt in µs, snd_cwnd, snd_ssthresh, total_retrans, the window
// scales, unacked, sacked, lost, bytes_acked), and waits.
const bytesProgram = `
import socket, struct, sys, time
ln = socket.socket(); ln.bind(("127.0.0.1", 0)); ln.listen(1)
c = socket.create_connection(ln.getsockname()); s, _ = ln.accept()
print("connected", flush=True); sys.stdin.readline()
c.sendall(b"x" * 100000)
got = 0
while got < 60000:
    got += len(s.recv(60000 - got))
s.sendall(b"y" * 5000)
got = 0
while got < 5000:
    got += len(c.recv(5000 - got))
time.sleep(0.3)
for name, sock in (("client", c), ("server", s)):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    ca_state, = struct.unpack_from("B", info, 1)
    rto, = struct.unpack_from("I", info, 8)
    rtt, _, ssthresh, cwnd = struct.unpack_from("IIII", info, 68)
    retrans, = struct.unpack_from("I", info, 100)
    wscale, = struct.unpack_from("B", info, 6)
    unacked, sacked, lost = struct.unpack_from("III", info, 24)
    acked, received = struct.unpack_from("QQ", info, 120)
    print(name, sock.getsockname()[1], received, ca_state, rto, rtt, cwnd, ssthresh, retrans,
          wscale & 15, wscale >> 4, unacked, sacked, lost, acked, flush=True)
time.sleep(60)
`

// TestSSBytesUnderRun: ss -i's byte counts for a program's connections
// agree with what the program moved and with the bytes_received its own
// TCP_INFO reads, and ss -i's other TCP_INFO values (ca_state, rto, rtt,
// cwnd, ssthresh, retrans) with what the program reads on its idle
// connections. Nobody looks before the transfer: the stack keeps each
// connection's latest probe sample whether or not anyone asked.
func TestSSBytesUnderRun(t *testing.T) {
	testbin.EndToEnd(t)
	python := testprog.Need(t, "python3")
	runtimeDir := t.TempDir()
	xdg := "XDG_RUNTIME_DIR=" + runtimeDir
	cmd := exec.Command(ustackBin, "run", "--name", "bytes", "--", python, "-c", bytesProgram)
	cmd.Env = cleanEnv(xdg)
	out, _ := cmd.StdoutPipe()
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "connected" {
		t.Fatalf("the program did not connect: %q %v", sc.Text(), sc.Err())
	}
	fmt.Fprintln(in, "go")
	// port -> what the program's TCP_INFO read
	type tcpInfo struct {
		received                              uint64
		caState                               int
		rtoUs, rttUs, cwnd, ssthresh, retrans uint32
		sndWscale, rcvWscale                  uint8
		unacked, sacked, lost                 uint32
		acked                                 uint64
	}
	programSaw := map[uint16]tcpInfo{}
	role := map[string]uint16{}
	for len(programSaw) < 2 && sc.Scan() {
		var name string
		var port uint16
		var i tcpInfo
		if _, err := fmt.Sscan(sc.Text(), &name, &port, &i.received, &i.caState, &i.rtoUs, &i.rttUs, &i.cwnd, &i.ssthresh, &i.retrans,
			&i.sndWscale, &i.rcvWscale, &i.unacked, &i.sacked, &i.lost, &i.acked); err != nil {
			t.Fatalf("program printed %q: %v", sc.Text(), err)
		}
		programSaw[port], role[name] = i, port
	}
	if len(programSaw) < 2 {
		t.Fatalf("the program ended early: %v", sc.Err())
	}
	r := runUstack(t, []string{xdg}, "ss", "-tin", "--json", "bytes")
	var socks []api.Socket
	if err := json.Unmarshal([]byte(r.stdout), &socks); err != nil {
		t.Fatalf("ss --json: %v\n%s", err, r.stdout)
	}
	// bytes_acked counts the SYN as well, as on Linux.
	want := map[uint16]struct{ acked, received uint64 }{
		role["client"]: {100001, 5000},
		role["server"]: {5001, 100000}, // 40000 of them still unread
	}
	for _, s := range socks {
		w, ok := want[s.Local.Port]
		if !ok || s.TCP == nil {
			continue
		}
		delete(want, s.Local.Port)
		if s.TCP.BytesAcked != w.acked || s.TCP.BytesReceived != w.received {
			t.Errorf("port %d: ss says bytes_acked %d bytes_received %d, want %d and %d",
				s.Local.Port, s.TCP.BytesAcked, s.TCP.BytesReceived, w.acked, w.received)
		}
		p := programSaw[s.Local.Port]
		if s.TCP.BytesReceived != p.received {
			t.Errorf("port %d: ss says bytes_received %d, the program's TCP_INFO %d",
				s.Local.Port, s.TCP.BytesReceived, p.received)
		}
		us := func(ms float64) uint32 { return uint32(math.Round(ms * 1000)) }
		// ss names netstack's states; TCP_INFO has Linux's numbers for them.
		caStates := map[string]int{"Open": 0, "Disorder": 1, "FastRecovery": 3, "SACKRecovery": 3, "RTORecovery": 4}
		got := tcpInfo{received: p.received, caState: caStates[s.TCP.CAState], rtoUs: us(s.TCP.RTOMs), rttUs: us(s.TCP.RTTMs),
			cwnd: s.TCP.Cwnd, ssthresh: s.TCP.Ssthresh, retrans: uint32(s.TCP.Retrans), lost: s.TCP.Lost, acked: s.TCP.BytesAcked}
		if cb := s.TCP.ControlBlock; cb != nil {
			got.sndWscale, got.rcvWscale = cb.SndWscale, cb.RcvWscale
			got.unacked, got.sacked = uint32(cb.Outstanding), uint32(cb.SackedOut)
		}
		// ss's milliseconds are a float; TCP_INFO truncates to µs.
		near := func(a, b uint32) bool { return a+1 >= b && b+1 >= a }
		if near(got.rtoUs, p.rtoUs) && near(got.rttUs, p.rttUs) {
			got.rtoUs, got.rttUs = p.rtoUs, p.rttUs
		}
		if got != p {
			t.Errorf("port %d: ss -i says %+v, the program's TCP_INFO %+v", s.Local.Port, got, p)
		}
		// bytes_sent is data only; nothing was lost or is in flight.
		if s.TCP.BytesSent != w.acked-1 {
			t.Errorf("port %d: bytes_sent %d, want %d", s.Local.Port, s.TCP.BytesSent, w.acked-1)
		}
	}
	if len(want) > 0 {
		t.Errorf("ss lacks the program's connections on ports %v:\n%s", want, r.stdout)
	}
	text := runUstack(t, []string{xdg}, "ss", "-tin", "bytes").stdout
	if !strings.Contains(text, "bytes_acked:100001 bytes_received:5000") {
		t.Errorf("ss -tin text lacks the client's byte counts:\n%s", text)
	}
}
