package programs_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpClient is a program that fetches a URL into a file.
type httpClient struct {
	name string
	prog string // what must be installed
	// args fetches url into out.
	args func(url, out string) []string
}

var httpClients = []httpClient{
	{"curl", "curl", func(url, out string) []string { return []string{"curl", "-sS", "--fail", "-o", out, url} }},
	{"wget", "wget", func(url, out string) []string { return []string{"wget", "-q", "-O", out, url} }},
	{"python3 urllib", "python3", func(url, out string) []string {
		return []string{"python3", "-c", "import sys, urllib.request, shutil\n" +
			"with urllib.request.urlopen(sys.argv[1]) as r, open(sys.argv[2], 'wb') as f: shutil.copyfileobj(r, f)", url, out}
	}},
	{"static Go", "", func(url, out string) []string { return []string{httpprogBin, "get", url, out} }},
}

func (c httpClient) need(t *testing.T) {
	if c.prog != "" {
		need(t, c.prog)
	}
}

// TestHTTPClientToHost: each client under 'ustack run' fetches from a
// server on the host's loopback through the gateway address 10.0.2.2.
func TestHTTPClientToHost(t *testing.T) {
	size := 8 << 20
	if raceEnabled {
		size = 2 << 20
	}
	data := randomData(size)
	port := hostHTTP(t, data)
	for _, c := range httpClients {
		t.Run(c.name, func(t *testing.T) {
			c.need(t)
			out := filepath.Join(t.TempDir(), "out")
			run(t, nil, c.args(fmt.Sprintf("http://10.0.2.2:%d/file", port), out)...).mustSucceed(60 * time.Second)
			checkFile(t, out, sum(data), size)
		})
	}
}

// TestHTTPSameStack: a server and a client in one 'ustack run', the client
// reaching the server over the stack's loopback (127.0.0.1) and over the
// stack's own address (10.0.2.15). The server is the static Go program
// (Go's dual-stack listener on [::]:8000) or python's http.server.
func TestHTTPSameStack(t *testing.T) {
	need(t, "sh")
	size := 8 << 20
	if raceEnabled {
		size = 2 << 20
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	want := writeRandomFile(t, file, size)
	servers := []struct {
		name, prog, cmd string
	}{
		{"go server", "", fmt.Sprintf("%s serve :8000 %s >/dev/null", httpprogBin, file)},
		{"python server", "python3", fmt.Sprintf("python3 -m http.server -d %s 8000 >/dev/null 2>&1", dir)},
	}
	for _, srv := range servers {
		for _, c := range httpClients {
			for _, host := range []string{"127.0.0.1", "10.0.2.15"} {
				t.Run(fmt.Sprintf("%s/%s/%s", srv.name, c.name, host), func(t *testing.T) {
					if srv.prog != "" {
						need(t, srv.prog)
					}
					c.need(t)
					out := filepath.Join(t.TempDir(), "out")
					url := fmt.Sprintf("http://%s:8000/file", host)
					fetch := shellQuote(c.args(url, out))
					// Up to 30 s for the server to listen on a loaded
					// machine; each try that fails is refused at once.
					script := fmt.Sprintf(`%s & pid=$!
for i in $(seq 300); do %s 2>/dev/null && break; sleep 0.1; done
%s; rc=$?; kill $pid; wait $pid; exit $rc`, srv.cmd, fetch, fetch)
					run(t, nil, "sh", "-c", script).mustSucceed(90 * time.Second)
					checkFile(t, out, want, size)
				})
			}
		}
	}
}

// TestHTTPServerPublished: a server under 'ustack run' reached from the
// host through a published port (-p 127.0.0.1:HOSTPORT:8000).
func TestHTTPServerPublished(t *testing.T) {
	size := 8 << 20
	if raceEnabled {
		size = 2 << 20
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	want := writeRandomFile(t, file, size)
	for _, srv := range []struct {
		name, prog string
		args       []string
	}{
		{"python3 http.server", "python3", []string{"python3", "-m", "http.server", "-d", dir, "8000"}},
		{"static Go", "", []string{httpprogBin, "serve", ":8000", file}},
	} {
		t.Run(srv.name, func(t *testing.T) {
			if srv.prog != "" {
				need(t, srv.prog)
			}
			hostPort := freePort(t)
			p := run(t, []string{"-p", fmt.Sprintf("127.0.0.1:%d:8000", hostPort)}, srv.args...)
			got := getUntilUp(t, p, fmt.Sprintf("http://127.0.0.1:%d/file", hostPort))
			if sum(got) != want || len(got) != size {
				t.Fatalf("got %d bytes, sha256 %s; want %d, %s", len(got), sum(got), size, want)
			}
			// A second connection: the server keeps serving.
			got = getUntilUp(t, p, fmt.Sprintf("http://127.0.0.1:%d/file", hostPort))
			if sum(got) != want {
				t.Fatalf("second fetch: got %d bytes, sha256 %s", len(got), sum(got))
			}
			p.signal(syscall.SIGTERM)
			p.wait(10 * time.Second)
		})
	}
}

// shellQuote joins args into one sh command line.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
