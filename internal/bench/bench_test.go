package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ustack/ustack/internal/testbin"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		parse func(string) (float64, error)
		out   string
		want  float64
		fails bool
	}{
		{"iperf3", parseIperf, "ustack: a line first\n{\"end\": {\"sum_received\": {\"bits_per_second\": 13.7e9}}}", 13.7, false},
		{"iperf3 error", parseIperf, `{"error": "unable to connect to server"}`, 0, true},
		{"iperf3 no JSON", parseIperf, "iperf3: error", 0, true},
		{"sockperf", parseSockperf, "sockperf: ---> percentile 75.000 =   30.1\nsockperf: ---> percentile 50.000 =   26.789\n", 26.789, false},
		{"sockperf only min", parseSockperf, "sockperf: ---> <MIN> observation =    6.169", 0, true},
		{"wrk", parseWrk, "  Socket errors: connect 0, read 120, write 0, timeout 0\nRequests/sec:  40988.12\n", 40988.12, false},
		{"wrk connect errors", parseWrk, "  Socket errors: connect 8, read 0, write 0, timeout 0\nRequests/sec:  12.0\n", 0, true},
		{"pgbench", parsePgbench, "tps = 5844.123456 (without initial connection time)\n", 5844.123456, false},
		{"helper key", func(s string) (float64, error) { return parseKey(s, "p50_us") }, "p50_us=29.6 n=1000\n", 29.6, false},
		{"helper key missing", func(s string) (float64, error) { return parseKey(s, "per_s") }, "p50_us=29.6\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.out)
			if tt.fails {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	s, ok := summarize([]float64{3, 1, 2})
	if !ok || s.median != 2 || s.min != 1 || s.max != 3 {
		t.Fatalf("summarize(3,1,2) = %+v, %v", s, ok)
	}
	if s, _ := summarize([]float64{4, 1, 2, 3}); s.median != 2.5 {
		t.Fatalf("median of 4 values = %v, want 2.5", s.median)
	}
	if _, ok := summarize(nil); ok {
		t.Fatal("summarize(nil) reported a figure")
	}
	if got := cell(summary{median: 21249, min: 20000, max: 22500.4, n: 3}, true, ""); got != "21,249 (20,000–22,500)" {
		t.Fatalf("cell = %q", got)
	}
}

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	os.WriteFile(path, []byte("# Benchmarks\n\nbefore\n"), 0o644)
	first := markBegin + "\nfirst\n" + markEnd + "\n"
	if err := writeSection(path, first); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	os.WriteFile(path, append(b, "after\n"...), 0o644)
	if err := writeSection(path, markBegin+"\nsecond\n"+markEnd+"\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	got := string(b)
	if strings.Contains(got, "first") || !strings.Contains(got, "second") ||
		!strings.HasPrefix(got, "# Benchmarks\n\nbefore\n") || !strings.HasSuffix(got, markEnd+"\nafter\n") {
		t.Fatalf("file after two runs:\n%s", got)
	}
	os.WriteFile(path, []byte(markBegin+"\nonly the beginning\n"), 0o644)
	if err := writeSection(path, first); err == nil {
		t.Fatal("a file with only one marker was overwritten")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--rows", "nosuch"}, {"--variants", "kernel,qemu"}, {"--rounds", "0"}, {"extra"}} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

// TestQuickPlumbing runs the command as a user would, on one row for the
// kernel alone, and checks that it measured and wrote the table; the figure
// itself is not judged.
func TestQuickPlumbing(t *testing.T) {
	testbin.EndToEnd(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: the command refuses to run without it")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip is not installed: apt-get install iproute2")
	}
	dir := t.TempDir()
	bin := buildBench(t, dir)
	out := filepath.Join(dir, "B.md")
	os.WriteFile(out, []byte("# Benchmarks\n\nkept\n"), 0o644)
	cmd := exec.Command(bin, "--quick", "--rows", "connect", "--variants", "kernel", "--out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bench: %v\n%s", err, b)
	}
	b, _ := os.ReadFile(out)
	got := string(b)
	row := regexp.MustCompile(`(?m)^\| connect \+ close, one after another \| per s \| [0-9,.]+ \| — \| — \|$`)
	if !strings.HasPrefix(got, "# Benchmarks\n\nkept\n") || !strings.Contains(got, markBegin) || !row.MatchString(got) {
		t.Fatalf("BENCHMARKS file:\n%s", got)
	}
}

// TestHelperUsage: a helper given the wrong arguments says how to call it
// and exits 2 (a usageError), not 1.
func TestHelperUsage(t *testing.T) {
	for _, tc := range []struct {
		helper string
		args   []string
	}{
		{"rr-client", nil},
		{"rr-server", []string{"a", "b"}},
		{"rr-client-fd", nil},
		{"relay-floor", []string{"127.0.0.1:1", "1s"}},
		{"relay-floor", []string{"127.0.0.1:1", "1s", "spin"}},
		{"wakeups", nil},
		{"wakeups", []string{"trace.out", "0"}},
		{"wakeups", []string{"trace.out", "many"}},
	} {
		err := helpers[tc.helper](tc.args)
		var usage usageError
		if !errors.As(err, &usage) {
			t.Errorf("%s %v: %v, want a usage error", tc.helper, tc.args, err)
		}
	}
}

// buildBench builds the command into dir and returns its path.
func buildBench(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bench")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
