package programs_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxSetup writes the test configuration and a served tree (a large
// random file "big" and a small "index.html") into a fresh directory and
// returns the directory, the configuration's path and big's SHA-256.
func nginxSetup(t *testing.T, size int) (dir, conf, want string) {
	t.Helper()
	dir = t.TempDir()
	conf, want = nginxSite(t, dir, size)
	return dir, conf, want
}

// nginxSite is nginxSetup in the directory dir.
func nginxSite(t *testing.T, dir string, size int) (conf, want string) {
	t.Helper()
	// As root, workers would otherwise run as nobody, which cannot enter
	// the test's private temporary directory.
	conf = nginxConf(t, dir, os.Geteuid() == 0)
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("ready\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want = writeRandomFile(t, filepath.Join(dir, "www", "big"), size)
	return conf, want
}

// nginxConf writes dir/nginx.conf, for nginx serving dir/www and writing
// its pid, logs and temporary files in dir, and returns its path. With
// asRoot, the master (which must then run as root) runs its workers as
// root too; without it, the master and its workers run as whoever starts
// nginx.
func nginxConf(t *testing.T, dir string, asRoot bool) string {
	t.Helper()
	tmpl, err := os.ReadFile("testdata/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	user := ""
	if asRoot {
		user = "user root;"
	}
	text := strings.NewReplacer("{{DIR}}", dir, "{{USER}}", user).Replace(string(tmpl))
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

var workerStart = regexp.MustCompile(`start worker process [0-9]+`)

// checkWorkers fails the test unless the master started two workers.
func checkWorkers(t *testing.T, dir string) {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(dir, "error.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(workerStart.FindAllString(string(log), -1)); n != 2 {
		t.Fatalf("nginx started %d worker processes, want 2; error.log:\n%s", n, tail(string(log)))
	}
	if strings.Contains(string(log), "[emerg]") || strings.Contains(string(log), "[alert]") {
		t.Fatalf("nginx logged errors:\n%s", tail(string(log)))
	}
}

func nginxSize() int {
	if raceEnabled {
		return 16 << 20
	}
	return 100 << 20
}

// TestNginx: nginx (master and two workers: fork, epoll, sendfile) under
// 'ustack run' serves a 100 MiB file to curl on the host through -p and to
// curl on the same stack, over IPv4 and IPv6 loopback.
func TestNginx(t *testing.T) {
	nginx := need(t, "nginx")
	curl := need(t, "curl")
	size := nginxSize()

	t.Run("host curl via -p", func(t *testing.T) {
		dir, conf, want := nginxSetup(t, size)
		hostPort := freePort(t)
		p := run(t, []string{"-p", fmt.Sprintf("127.0.0.1:%d:8080", hostPort)}, nginx, "-c", conf, "-e", filepath.Join(dir, "error.log"))
		getUntilUp(t, p, fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort))
		out := filepath.Join(dir, "out")
		c := exec.Command(curl, "-sS", "--fail", "-o", out, fmt.Sprintf("http://127.0.0.1:%d/big", hostPort))
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("curl: %v: %s; ustack's stderr:\n%s", err, b, tail(p.stderr.String()))
		}
		checkFile(t, out, want, size)
		checkWorkers(t, dir)
		// SIGTERM to ustack reaches nginx's master: a fast shutdown, exit 0.
		p.signal(syscall.SIGTERM)
		p.mustSucceed(30 * time.Second)
	})

	t.Run("curl on the same stack", func(t *testing.T) {
		need(t, "sh")
		dir, conf, want := nginxSetup(t, size)
		out4, out6 := filepath.Join(dir, "out4"), filepath.Join(dir, "out6")
		script := fmt.Sprintf(`%[1]s -c %[2]s -e %[3]s/error.log & pid=$!
for i in $(seq 300); do %[4]s -s -o /dev/null http://127.0.0.1:8080/index.html && break; sleep 0.1; done
%[4]s -sS --fail -o %[5]s http://127.0.0.1:8080/big && %[4]s -sS --fail -g -o %[6]s 'http://[::1]:8080/big'
rc=$?; kill $pid; wait $pid; exit $rc`, nginx, conf, dir, curl, out4, out6)
		p := run(t, nil, "sh", "-c", script)
		p.mustSucceed(120 * time.Second)
		checkFile(t, out4, want, size)
		checkFile(t, out6, want, size)
		checkWorkers(t, dir)
	})
}
