package serve_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/internal/testdns"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/nat"
	"github.com/ustack/ustack/serve"
)

// needPrograms skips unless the kernel can intercept and the programs are
// installed.
func needPrograms(t *testing.T, progs ...string) {
	t.Helper()
	if err := intercept.CheckKernel(); err != nil {
		t.Skipf("programs cannot be run on a stack here: %v", err)
	}
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (scripts/test.sh installs it)", p)
		}
	}
}

// fileServer serves body at http://PEER:8080/file from the peer stack.
func fileServer(t *testing.T, st *ustack.Stack, body []byte) {
	t.Helper()
	ln, err := st.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func randomBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// curl is a program that fetches url into a file of the test's.
func curl(t *testing.T, url string) (serve.Program, string) {
	out := filepath.Join(t.TempDir(), "body")
	return serve.Program{
		Args:   []string{"curl", "-sS", "--max-time", "20", "-o", out, url},
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Logf:   t.Logf,
	}, out
}

func checkBody(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("the program got %d bytes that differ from the %d served", len(got), len(want))
	}
}

// TestRun: a program run on the served stack reaches the peer through it,
// and its exit status comes back.
func TestRun(t *testing.T) {
	needPrograms(t, "curl", "sh")
	f := newFixture(t, "runner", serve.Config{Command: "run"})
	body := randomBody(1 << 20)
	fileServer(t, f.peer, body)
	prog, out := curl(t, "http://10.0.9.2:8080/file")
	ps, err := f.served.Run(prog)
	if err != nil || ps.ExitCode() != 0 {
		t.Fatalf("curl on the stack: %v, %v", ps, err)
	}
	checkBody(t, out, body)

	ps, err = f.served.Run(serve.Program{Args: []string{"sh", "-c", "exit 7"}, Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil || ps.ExitCode() != 7 {
		t.Errorf("sh -c 'exit 7': %v, %v", ps, err)
	}
	if _, err := f.served.Run(serve.Program{Args: []string{"no-such-program-here"}}); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("a program not in PATH: %v, want exec.ErrNotFound", err)
	}
}

// runtimeOf reads GET /v1/runtime.
func runtimeOf(t *testing.T, c *control.Client) api.Runtime {
	t.Helper()
	var r api.Runtime
	if err := c.Get(ctxFor(t, 10*time.Second), "/v1/runtime", &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRunAttached: a program handed to a stack that serves attaching
// (Config.Attach) has its sockets on that stack; once it is gone the
// stack serves no program and holds no program socket.
func TestRunAttached(t *testing.T) {
	needPrograms(t, "curl")
	f := newFixture(t, "shared", serve.Config{Command: "daemon", Attach: true})
	body := randomBody(1 << 20)
	fileServer(t, f.peer, body)
	prog, out := curl(t, "http://10.0.9.2:8080/file")
	ps, err := serve.RunAttached(ctxFor(t, 30*time.Second), f.client, prog)
	if err != nil || ps.ExitCode() != 0 {
		t.Fatalf("curl attached: %v, %v", ps, err)
	}
	checkBody(t, out, body)
	testwait.ForNil(t, "the stack to let go of the exited program", func() error {
		if r := runtimeOf(t, f.client); r.Attached != 0 || r.Sockets != 0 {
			return fmt.Errorf("the stack still serves %+v", r)
		}
		return nil
	})
}

// TestRunAttachedRefused: a stack that does not serve attaching, or no
// stack at all, refuses the program, which then does not run.
func TestRunAttachedRefused(t *testing.T) {
	needPrograms(t, "touch")
	f := newFixture(t, "private", serve.Config{Command: "run"})
	for _, tc := range []struct {
		name   string
		client *control.Client
		check  func(error) bool
	}{
		{"no attach", f.client, func(err error) bool { return strings.Contains(err.Error(), "refused") }},
		{"no stack", control.Dial("nosuch"), func(err error) bool { var nr *control.NotRunningError; return errors.As(err, &nr) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ran")
			_, err := serve.RunAttached(ctxFor(t, 30*time.Second), tc.client, serve.Program{Args: []string{"touch", marker}, Logf: t.Logf})
			if err == nil || !tc.check(err) {
				t.Errorf("RunAttached: %v", err)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the program ran although no stack served it")
			}
		})
	}
}

// TestNameserversRedirected: on nat, a program's queries to the host's
// nameserver from /etc/resolv.conf go to the stack's DNS address, which
// forwards them to the stack's upstream: here the test's own server, for a
// name only it knows.
func TestNameserversRedirected(t *testing.T) {
	needPrograms(t, "dig")
	servers, err := nat.HostResolvers("/etc/resolv.conf")
	if err != nil || len(servers) == 0 {
		t.Skipf("no nameserver in /etc/resolv.conf (%v)", err)
	}
	n := rand.IntN(1 << 16)
	name, addr := fmt.Sprintf("h%d.serve.ustack.test.", n), netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + n%250)})
	dns := testdns.New(t, map[string][]netip.Addr{name: {addr}})

	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	st, err := ustack.New(ustack.Config{Net: ustack.NAT{DNSUpstreams: []netip.AddrPort{dns.Addr()}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.Listen("resolver", t.Logf)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	s := serve.New(srv, st, serve.Config{Command: "run", Logf: t.Logf})
	defer s.Close()

	out := filepath.Join(t.TempDir(), "answer")
	outFile, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	ns := servers[0]
	ps, err := s.Run(serve.Program{
		Args:   []string{"dig", "+tries=1", "+time=10", "-p", fmt.Sprint(ns.Port()), "@" + ns.Addr().String(), name, "A", "+short"},
		Stdout: outFile, Stderr: os.Stderr, Logf: t.Logf,
	})
	if err != nil || ps.ExitCode() != 0 {
		t.Fatalf("dig: %v, %v", ps, err)
	}
	got, _ := os.ReadFile(out)
	if strings.TrimSpace(string(got)) != addr.String() {
		t.Fatalf("dig @%s answered %q, want %s", ns, got, addr)
	}
	if !dns.Asked(name, dnsmessage.TypeA, "udp") {
		t.Errorf("the upstream was not asked; it saw %v", dns)
	}
}
