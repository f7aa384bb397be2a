package programs_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func redisRequests() int {
	if raceEnabled {
		return 2000
	}
	return 10000
}

// redisServerCmd is a redis-server on port 6379 of the stack that writes
// nothing to disk, for sh.
func redisServerCmd(dir string) string {
	return fmt.Sprintf("redis-server --port 6379 --save '' --appendonly no --dir %s --logfile %s", dir, filepath.Join(dir, "redis.log"))
}

// redisClientScript waits for the server, sets and gets a key, runs a
// short redis-benchmark and prints its summary.
func redisClientScript(value string, requests int) string {
	return fmt.Sprintf(`for i in $(seq 300); do [ "$(redis-cli -p 6379 ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
redis-cli -p 6379 set progs:key %[1]s || exit 1
echo "get: $(redis-cli -p 6379 get progs:key)"
redis-benchmark -p 6379 -n %[2]d -q -t set,get || exit 1
`, value, requests)
}

// benchLine is redis-benchmark -q's summary of one test.
var benchLine = regexp.MustCompile(`^(SET|GET): ([0-9.]+) requests per second`)

// checkRedisOutput checks the round trip and the benchmark's summary.
func checkRedisOutput(t *testing.T, out, value string) {
	t.Helper()
	if !strings.Contains(out, "get: "+value+"\n") {
		t.Fatalf("GET did not return %q:\n%s", value, tail(out))
	}
	rps := map[string]float64{}
	for _, l := range lines(out) {
		if m := benchLine.FindStringSubmatch(l); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("redis-benchmark: %q: %v", l, err)
			}
			rps[m[1]] = v
		}
	}
	for _, test := range []string{"SET", "GET"} {
		if rps[test] <= 0 {
			t.Fatalf("no %s summary with requests per second > 0 in redis-benchmark's output:\n%s", test, tail(out))
		}
	}
	t.Logf("redis-benchmark: SET %.0f, GET %.0f requests per second", rps["SET"], rps["GET"])
}

// TestRedisOneStack: redis-server, redis-cli and redis-benchmark in one
// 'ustack run', over the stack's loopback.
func TestRedisOneStack(t *testing.T) {
	for _, p := range []string{"sh", "redis-server", "redis-cli", "redis-benchmark"} {
		need(t, p)
	}
	dir := t.TempDir()
	value := fmt.Sprintf("v%d", rand.Uint64())
	script := fmt.Sprintf("%s & pid=$!\n%s\nrc=$?; redis-cli -p 6379 shutdown nosave; wait $pid; exit $rc",
		redisServerCmd(dir), redisClientScript(value, redisRequests()))
	p := run(t, nil, "sh", "-c", script)
	if code := p.wait(120 * time.Second); code != 0 {
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s\nredis.log:\n%s", code, tail(p.stdout.String()), tail(p.stderr.String()), tail(string(log)))
	}
	checkRedisOutput(t, p.stdout.String(), value)
}

// TestRedisDaemonStack: redis-server under one 'ustack run --stack NAME'
// and redis-cli and redis-benchmark under another, both on the stack of
// one 'ustack daemon --name NAME'.
func TestRedisDaemonStack(t *testing.T) {
	for _, p := range []string{"sh", "redis-server", "redis-cli", "redis-benchmark"} {
		need(t, p)
	}
	dir := t.TempDir()
	// The control socket goes in a directory of the test's own.
	t.Setenv("XDG_RUNTIME_DIR", dir)
	name := fmt.Sprintf("progs-redis-%d", os.Getpid())
	daemon := start(t, nil, ustackBin, "daemon", "--name", name)
	daemon.waitOutput("ready on")

	server := start(t, nil, ustackBin, "run", "--stack", name, "--", "sh", "-c", "exec "+redisServerCmd(dir))
	value := fmt.Sprintf("v%d", rand.Uint64())
	client := start(t, nil, ustackBin, "run", "--stack", name, "--", "sh", "-c", redisClientScript(value, redisRequests()))
	if code := client.wait(120 * time.Second); code != 0 {
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		t.Fatalf("client exit %d; stdout:\n%s\nstderr:\n%s\nserver's stderr:\n%s\nredis.log:\n%s", code,
			tail(client.stdout.String()), tail(client.stderr.String()), tail(server.stderr.String()), tail(string(log)))
	}
	checkRedisOutput(t, client.stdout.String(), value)
	server.signal(syscall.SIGTERM)
	if code := server.wait(30 * time.Second); code != 0 {
		t.Errorf("redis-server exited %d after SIGTERM; stderr:\n%s", code, server.stderr.String())
	}
	daemon.signal(syscall.SIGTERM)
	daemon.wait(30 * time.Second)
}
