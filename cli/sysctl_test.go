package cli_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// ssConn is what these tests read of a connection in ustack ss --json.
type ssConn struct {
	Peer struct{ Port int }
	TCP  *struct {
		CC           string `json:"cc"`
		ControlBlock *struct {
			SACKPermitted bool `json:"sack_permitted"`
		} `json:"control_block"`
	}
}

// connTo waits until stack name has an established connection to
// 10.0.2.2:port with its control block sampled, and returns it.
func connTo(t *testing.T, env []string, name string, port int) ssConn {
	t.Helper()
	var found ssConn
	testwait.ForNil(t, fmt.Sprintf("a connection to port %d in ss of %s", port, name), func() error {
		r := runUstack(t, env, "ss", "--json", name)
		if r.code != 0 {
			return fmt.Errorf("ss: exit %d %q", r.code, r.stderr)
		}
		var socks []ssConn
		if err := json.Unmarshal([]byte(r.stdout), &socks); err != nil {
			return err
		}
		for _, s := range socks {
			if s.Peer.Port == port && s.TCP != nil && s.TCP.ControlBlock != nil {
				found = s
				return nil
			}
		}
		return fmt.Errorf("not in %s", r.stdout)
	})
	return found
}

// TestSysctl: ustack sysctl lists a daemon's options with when a change
// takes effect, changes them live, and a connection made afterwards has
// them (no SACK in its handshake, cubic) while one made before keeps its
// own; mistakes are one line and exit 2.
func TestSysctl(t *testing.T) {
	runtimeDir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	d := startDaemon(t, runtimeDir, "sc")
	port := holdServer(t, 1000)

	r := runUstack(t, env, "sysctl", "sc")
	for _, want := range []string{"tcp.cc = reno\t(new connections)\n", "tcp.sack = 1\t(new connections)\n", "tcp.time_wait = 1m0s\t(live)\n", "tcp.probe = 1\t(at start only)\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("sysctl: exit %d, %q; want it to hold %q", r.code, r.stdout, want)
		}
	}
	tunnel(t, d.sock, port, 10, 1000)
	before := connTo(t, env, "sc", port)
	if before.TCP.CC != "reno" || !before.TCP.ControlBlock.SACKPermitted {
		t.Fatalf("before: cc %q, SACK permitted %v; want reno with SACK", before.TCP.CC, before.TCP.ControlBlock.SACKPermitted)
	}

	r = runUstack(t, env, "sysctl", "sc", "tcp.sack=0", "net.ipv4.tcp_congestion_control=cubic")
	if want := "tcp.sack = 0\t(new connections)\ntcp.cc = cubic\t(new connections)\n"; r.code != 0 || r.stdout != want {
		t.Fatalf("sysctl set: exit %d, %q (%q); want %q", r.code, r.stdout, r.stderr, want)
	}
	if r = runUstack(t, env, "sysctl", "tcp.sack"); r.stdout != "tcp.sack = 0\t(new connections)\n" {
		t.Errorf("sysctl tcp.sack after the change: %q %q", r.stdout, r.stderr)
	}

	// A second server, so that the new connection is told from the old.
	port2 := holdServer(t, 1000)
	tunnel(t, d.sock, port2, 10, 1000)
	after := connTo(t, env, "sc", port2)
	if after.TCP.CC != "cubic" || after.TCP.ControlBlock.SACKPermitted {
		t.Errorf("after: cc %q, SACK permitted %v; want cubic without SACK", after.TCP.CC, after.TCP.ControlBlock.SACKPermitted)
	}
	if old := connTo(t, env, "sc", port); old.TCP.CC != "reno" || !old.TCP.ControlBlock.SACKPermitted {
		t.Errorf("the earlier connection changed: cc %q, SACK permitted %v", old.TCP.CC, old.TCP.ControlBlock.SACKPermitted)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sysctl", "sc", "tcp.nosuch=1"}, `ustack: sysctl: unknown key "tcp.nosuch" (known: tcp.cc,`},
		{[]string{"sysctl", "sc", "tcp.sack=maybe"}, "ustack: sysctl: tcp.sack=maybe: want 1 or 0"},
		{[]string{"sysctl", "sc", "tcp.cc=nosuch"}, "ustack: sysctl: tcp.cc=nosuch: "},
		{[]string{"sysctl", "sc", "tcp.probe=0"}, "ustack: sysctl: tcp.probe can only be set when the stack starts (--sysctl tcp.probe=0)"},
		{[]string{"sysctl", "sc", "tcp.sack", "tcp.nagle=1"}, "ustack: sysctl: give keys to show or KEY=VALUE settings to make, not both"},
	} {
		r := runUstack(t, env, tc.args...)
		if line := oneLine(t, r); r.code != 2 || !strings.HasPrefix(line, tc.want) {
			t.Errorf("ustack %s: exit %d, %q; want 2, %q", strings.Join(tc.args, " "), r.code, line, tc.want)
		}
	}
}

// TestVariantsByEnvironment: the same unmodified program (a Python TCP
// client) run under ustack run with USTACK_CC=reno, then USTACK_CC=cubic,
// then USTACK_SYSCTL turning SACK off and USTACK_MUTATE adding a rule:
// each run's stack shows its variant on the program's connection, with
// nothing rebuilt or changed on the command line.
func TestVariantsByEnvironment(t *testing.T) {
	testbin.EndToEnd(t)
	python := testprog.Need(t, "python3")
	runtimeDir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	// The client connects through the stack's NAT to the host, sends a
	// line and waits for the server to close.
	client := fmt.Sprintf(`import socket
s = socket.create_connection(("10.0.2.2", %d))
s.sendall(b"hello\n")
while s.recv(4096):
    pass
`, port)
	for _, v := range []struct {
		name, env  string
		cc         string
		sack       bool
		mutateRule string
	}{
		{"reno", "USTACK_CC=reno", "reno", true, ""},
		{"cubic", "USTACK_CC=cubic", "cubic", true, ""},
		{"nosack", "USTACK_SYSCTL=tcp.sack=0;tcp.nagle=1", "reno", false, ""},
		{"mutated", "USTACK_MUTATE=icmp drop", "reno", true, "icmp drop"},
	} {
		t.Run(v.name, func(t *testing.T) {
			name := "variant-" + v.name
			cmd := exec.Command(ustackBin, "run", "--name", name, "--", python, "-c", client)
			cmd.Env = cleanEnv(append(env, v.env)...)
			out := new(strings.Builder)
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
				t.Fatal(err)
			}
			got := connTo(t, env, name, port)
			if got.TCP.CC != v.cc || got.TCP.ControlBlock.SACKPermitted != v.sack {
				t.Errorf("%s: cc %q, SACK permitted %v; want %q, %v", v.env, got.TCP.CC, got.TCP.ControlBlock.SACKPermitted, v.cc, v.sack)
			}
			if v.mutateRule != "" {
				if r := runUstack(t, env, "mutate", "show", name); !strings.Contains(r.stdout, "rule 1: "+v.mutateRule) {
					t.Errorf("%s: mutate show %q", v.env, r.stdout)
				}
			}
			if v.env == "USTACK_SYSCTL=tcp.sack=0;tcp.nagle=1" {
				if r := runUstack(t, env, "sysctl", name, "tcp.sack", "tcp.nagle"); r.stdout != "tcp.sack = 0\t(new connections)\ntcp.nagle = 1\t(new connections)\n" {
					t.Errorf("%s: sysctl %q %q", v.env, r.stdout, r.stderr)
				}
			}
			c.Close()
			if err := cmd.Wait(); err != nil {
				t.Errorf("ustack run with %s: %v\n%s", v.env, err, out)
			}
		})
	}
}
