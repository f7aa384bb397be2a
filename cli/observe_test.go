package cli_test

// Tests of ustack trace and ustack capture against a running daemon whose
// CONNECT tunnel carries a TCP connection to a host server.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// startCommand starts ustack with args in the background.
func startCommand(t *testing.T, runtimeDir string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	testbin.EndToEnd(t)
	cmd := exec.Command(ustackBin, args...)
	cmd.Env = cleanEnv("XDG_RUNTIME_DIR=" + runtimeDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &stderr
}

// waitFile waits until path holds at least n bytes.
func waitFile(t *testing.T, path string, n int64) {
	t.Helper()
	testwait.ForNil(t, fmt.Sprintf("%s to hold %d bytes", path, n), func() error {
		fi, err := os.Stat(path)
		if err == nil && fi.Size() < n {
			err = fmt.Errorf("%d bytes", fi.Size())
		}
		return err
	})
}

// waitCaptures waits until the stack at sock serves n live captures of its
// NICs' frames, as GET /v1/subscribers counts them.
func waitCaptures(t *testing.T, sock string, n int) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", sock)
	}}}
	defer client.CloseIdleConnections()
	testwait.ForNil(t, fmt.Sprintf("%d live captures of the stack", n), func() error {
		resp, err := client.Get("http://ustack/v1/subscribers")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var subs api.Subscribers
		if err := json.NewDecoder(resp.Body).Decode(&subs); err != nil {
			return err
		}
		got := 0
		for _, c := range subs.NICs {
			got += c
		}
		if got != n {
			return fmt.Errorf("subscribers %+v", subs)
		}
		return nil
	})
}

// stopWith sends sig and waits up to 10 s for the command to exit.
func stopWith(t *testing.T, cmd *exec.Cmd, sig os.Signal) int {
	t.Helper()
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("ustack %s still running 10s after %v", strings.Join(cmd.Args[1:], " "), sig)
	}
	return cmd.ProcessState.ExitCode()
}

func TestTraceCommand(t *testing.T) {
	runtimeDir := t.TempDir()
	d := startDaemon(t, runtimeDir, "trc", "--mtu", "1500")
	port := holdServer(t, 2_000_000)
	dir := t.TempDir()
	filter := fmt.Sprintf("10.0.2.2:%d", port)
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		out := filepath.Join(dir, fmt.Sprintf("t%d.jsonl", sig))
		cmd, stderr := startCommand(t, runtimeDir, "trace", "trc", "--filter", filter, "-o", out)
		waitFile(t, out, 10) // the start record
		c := tunnel(t, d.sock, port, 100_000, 2_000_000)
		if code := stopWith(t, cmd, sig); code != 0 {
			t.Fatalf("trace stopped by %v: exit %d, stderr %q", sig, code, stderr)
		}
		c.Close()
		if !strings.HasPrefix(stderr.String(), "ustack trace: ") {
			t.Errorf("stderr %q", stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		kinds := map[string]int{}
		var sentData, rcvdData int
		for i, l := range lines {
			var r struct {
				Kind, Local, Remote, Dir string
				Len                      int
				Samples, Packets         int
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("line %d: %v: %q", i+1, err, l)
			}
			kinds[r.Kind]++
			switch r.Kind {
			case "cb", "pkt":
				if r.Remote != filter || !strings.HasPrefix(r.Local, "10.0.2.15:") {
					t.Fatalf("line %d is of another connection: %s", i+1, l)
				}
				if r.Dir == "out" {
					sentData += r.Len
				} else {
					rcvdData += r.Len
				}
			case "end":
				if i != len(lines)-1 || r.Samples != kinds["cb"] || r.Packets != kinds["pkt"] {
					t.Errorf("end record %s on line %d of %d; file has %d cb and %d pkt", l, i+1, len(lines), kinds["cb"], kinds["pkt"])
				}
			}
		}
		if kinds["start"] != 1 || kinds["end"] != 1 || kinds["cb"] == 0 || kinds["pkt"] == 0 {
			t.Errorf("records by kind: %v", kinds)
		}
		// The tunnel wrote 100 000 bytes and read 2 000 000: the packet
		// records carry at least that much payload each way.
		if sentData < 100_000 || rcvdData < 2_000_000 {
			t.Errorf("packet records carry %d bytes out and %d in", sentData, rcvdData)
		}
	}

	// ustack plot reads the trace.
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	trace := filepath.Join(dir, fmt.Sprintf("t%d.jsonl", os.Interrupt))
	r := runUstack(t, env, "plot", trace, "--list")
	if r.code != 0 || !strings.Contains(r.stdout, "10.0.2.2:"+fmt.Sprint(port)) {
		t.Errorf("plot --list: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, g := range []string{"tsg", "cwnd", "rtt", "tput"} {
		img := filepath.Join(dir, g+".svg")
		r = runUstack(t, env, "plot", trace, "--graph", g, "-o", img)
		b, _ := os.ReadFile(img)
		if r.code != 0 || !bytes.Contains(b, []byte("<svg")) {
			t.Errorf("plot --graph %s: exit %d, stderr %q, %d bytes", g, r.code, r.stderr, len(b))
		}
	}
	for _, tc := range []struct{ args, want string }{
		{"--graph bogus -o x.svg", "--graph:"},
		{"-o x.gif", "-o:"},
		{"", "missing -o"},
		{"--conn 9 -o x.svg", "--conn:"},
	} {
		r = runUstack(t, env, append([]string{"plot", trace}, strings.Fields(tc.args)...)...)
		if line := oneLine(t, r); r.code != 2 || !strings.Contains(line, tc.want) {
			t.Errorf("plot %s: exit %d, %q; want 2 and %q", tc.args, r.code, line, tc.want)
		}
	}

	// --duration ends the trace by itself.
	r = runUstack(t, []string{"XDG_RUNTIME_DIR=" + runtimeDir}, "trace", "trc", "--duration", "300ms", "-o", filepath.Join(dir, "d.jsonl"))
	if r.code != 0 || !strings.Contains(r.stderr, "0 control-block samples") {
		t.Errorf("trace --duration: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestTraceCaptureUsage(t *testing.T) {
	runtimeDir := t.TempDir()
	startDaemon(t, runtimeDir, "use")
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"trace", "use"}, 2, "missing -o"},
		{[]string{"trace", "use", "--filter", "10.0.2.2:99999", "-o", "/dev/null"}, 2, "--filter:"},
		{[]string{"trace", "nosuch", "-o", "/dev/null"}, 1, "no stack named nosuch"},
		{[]string{"capture", "use"}, 2, "missing -w"},
		{[]string{"capture", "use", "-i", "lo", "-w", "/dev/null"}, 2, `no NIC "lo"`},
		{[]string{"capture", "use", "-s", "10", "-w", "/dev/null"}, 2, "-s"},
	} {
		r := runUstack(t, env, tc.args...)
		if line := oneLine(t, r); r.code != tc.code || !strings.Contains(line, tc.want) {
			t.Errorf("ustack %s: exit %d, %q; want %d and %q", strings.Join(tc.args, " "), r.code, line, tc.code, tc.want)
		}
	}
}

func TestCaptureCommand(t *testing.T) {
	for _, prog := range []string{"tcpdump", "tshark", "sh"} {
		testprog.Need(t, prog)
	}
	runtimeDir := t.TempDir()
	d := startDaemon(t, runtimeDir, "cap")
	port := holdServer(t, 50_000)
	out := filepath.Join(t.TempDir(), "c.pcap")
	cmd, stderr := startCommand(t, runtimeDir, "capture", "cap", "-w", out)
	waitFile(t, out, 24) // the pcap header
	tunnel(t, d.sock, port, 1000, 50_000)
	// The capture is stopped once the handshake's frames are in the file.
	synFilter := fmt.Sprintf("tcp.port == %d && tcp.flags.syn == 1", port)
	testwait.ForNil(t, "the handshake in the capture file", func() error {
		ts, err := exec.Command("tshark", "-r", out, "-Y", synFilter).CombinedOutput()
		if err != nil || strings.Count(string(ts), "SYN") < 2 {
			return fmt.Errorf("tshark -r: %v\n%s", err, ts)
		}
		return nil
	})
	if code := stopWith(t, cmd, os.Interrupt); code != 0 {
		t.Fatalf("capture: exit %d, stderr %q", code, stderr)
	}
	portText := fmt.Sprintf("10.0.2.2.%d", port)
	td, err := exec.Command("tcpdump", "-nn", "-r", out).CombinedOutput()
	if err != nil || !strings.Contains(string(td), "10.0.2.15.") || !strings.Contains(string(td), portText+": Flags [S]") {
		t.Errorf("tcpdump -r: %v\n%s", err, td)
	}
	ts, err := exec.Command("tshark", "-r", out, "-Y", synFilter).CombinedOutput()
	if err != nil || strings.Count(string(ts), "SYN") < 2 {
		t.Errorf("tshark -r: %v\n%s", err, ts)
	}

	// -w - into tcpdump, which quits after 4 frames: capture ends with
	// it, though the stack is quiet by then.
	waitCaptures(t, d.sock, 0) // the first capture has let go
	sh := exec.Command("sh", "-c", fmt.Sprintf("%q capture cap -w - | tcpdump -nn -r - -c 4", ustackBin))
	sh.Env = cleanEnv("XDG_RUNTIME_DIR=" + runtimeDir)
	var shOut bytes.Buffer
	sh.Stdout, sh.Stderr = &shOut, &shOut
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sh.Wait() }()
	waitCaptures(t, d.sock, 1)
	tunnel(t, d.sock, port, 1000, 50_000)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("capture | tcpdump -c 4: %v\n%s", err, shOut.String())
		}
	case <-time.After(15 * time.Second):
		sh.Process.Kill()
		t.Fatalf("capture | tcpdump -c 4 still running after 15s:\n%s", shOut.String())
	}
	n := 0
	sc := bufio.NewScanner(&shOut)
	for sc.Scan() {
		if strings.Contains(sc.Text(), portText) {
			n++
		}
	}
	if n != 4 {
		t.Errorf("tcpdump printed %d frames of the connection, want 4:\n%s", n, shOut.String())
	}
}
