package programs_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// iperfSeconds is the length of one iperf3 run in the benchmarks.
const iperfSeconds = 5

// BenchmarkIperf3 runs iperf3 (one TCP stream, iperfSeconds long per op)
// under 'ustack run' against an iperf3 server on the host's loopback
// through nat (10.0.2.2), each way and at two MTUs; beside it the same
// client and server on the kernel over loopback, and both ends under one
// 'ustack run' over the stack's loopback. The figure is iperf3's own
// receiver rate; ns/op includes starting the programs.
//
//	go test -run '^$' -bench Iperf3 -benchtime 1x -count 3 ./programs
func BenchmarkIperf3(b *testing.B) {
	iperf3 := need(b, "iperf3")
	type path struct {
		name  string
		run   []string // 'ustack run' flags; nil: the kernel
		host  string   // where the server is, seen from the client
		iflag []string // extra iperf3 client flags
	}
	paths := []path{
		{"run-nat/stack-sends", []string{}, "10.0.2.2", nil},
		{"run-nat/host-sends", []string{}, "10.0.2.2", []string{"-R"}},
		{"run-nat-mtu1500/stack-sends", []string{"--mtu", "1500"}, "10.0.2.2", nil},
		{"run-nat-mtu1500/host-sends", []string{"--mtu", "1500"}, "10.0.2.2", []string{"-R"}},
		{"kernel-loopback/send", nil, "127.0.0.1", nil},
		{"kernel-loopback/receive", nil, "127.0.0.1", []string{"-R"}},
	}
	for _, pt := range paths {
		b.Run(pt.name, func(b *testing.B) {
			var gbits float64
			for i := 0; i < b.N; i++ {
				port := hostIperf3(b)
				args := append([]string{iperf3, "-c", pt.host, "-p", fmt.Sprint(port), "-t", fmt.Sprint(iperfSeconds), "-J"}, pt.iflag...)
				var p *proc
				if pt.run == nil {
					p = start(b, nil, args[0], args[1:]...)
				} else {
					p = run(b, pt.run, args...)
				}
				p.mustSucceed(time.Duration(iperfSeconds+60) * time.Second)
				gbits += benchIperf(b, p.stdout.String())
			}
			b.ReportMetric(gbits/float64(b.N), "Gbit/s")
		})
	}
	b.Run("run-one-stack/loopback", func(b *testing.B) {
		need(b, "sh")
		need(b, "grep")
		out := filepath.Join(b.TempDir(), "out.json")
		var gbits float64
		for i := 0; i < b.N; i++ {
			// The client starts once the server says it listens: iperf3 -J
			// exits 0 even when its connect is refused, after which the
			// server (-1) would wait for a client forever.
			srvLog := filepath.Join(b.TempDir(), "server.log")
			script := fmt.Sprintf(`iperf3 -s -1 -p 5201 --forceflush > %[3]s 2>&1 & pid=$!
n=0; until grep -q "Server listening" %[3]s; do n=$((n+1)); [ $n -gt 300 ] && exit 3; sleep 0.1; done
iperf3 -c 127.0.0.1 -p 5201 -t %[1]d -J > %[2]s; rc=$?; wait $pid; exit $rc`, iperfSeconds, out, srvLog)
			run(b, nil, "sh", "-c", script).mustSucceed(time.Duration(iperfSeconds+60) * time.Second)
			js, err := os.ReadFile(out)
			if err != nil {
				b.Fatal(err)
			}
			gbits += benchIperf(b, string(js))
		}
		b.ReportMetric(gbits/float64(b.N), "Gbit/s")
	})
}

// benchIperf returns the receiver's rate in Gbit/s of one iperf3 -J run.
// An error iperf3 reports beside its figures (such as an unreadable
// TCP_INFO) is logged: TestIperf3* fail on it, the figures stand.
func benchIperf(b *testing.B, out string) float64 {
	b.Helper()
	r := parseIperfJSON(b, []byte(out))
	if r.Error != "" {
		b.Logf("iperf3 reported: %s", r.Error)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

// BenchmarkRunCurlFetch is the nat fetch of the root package's
// BenchmarkNATFetch (an HTTP GET of 64 MiB from a Go server on the host's
// loopback via 10.0.2.2) made by curl under 'ustack run' instead of Go's
// net/http on the Go API, and beside it by curl on the kernel. The
// Gbit/s figure is curl's own transfer rate; ns/op includes starting
// ustack and curl.
//
//	go test -run '^$' -bench RunCurlFetch -benchtime 10x -count 3 ./programs
func BenchmarkRunCurlFetch(b *testing.B) {
	curl := need(b, "curl")
	const size = 64 << 20
	chunk := make([]byte, 1<<20)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for i := 0; i < size/len(chunk); i++ {
			w.Write(chunk)
		}
	})}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, c := range []struct {
		name string
		run  []string // nil: curl on the kernel
		host string
	}{
		{"run-nat/mtu=default", []string{}, "10.0.2.2"},
		{"run-nat/mtu=1500", []string{"--mtu", "1500"}, "10.0.2.2"},
		{"kernel-loopback", nil, "127.0.0.1"},
	} {
		b.Run(c.name, func(b *testing.B) {
			args := []string{curl, "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}", fmt.Sprintf("http://%s:%d/", c.host, port)}
			b.SetBytes(size)
			var gbits float64
			for i := 0; i < b.N; i++ {
				var out []byte
				if c.run == nil {
					var errb bytes.Buffer
					cmd := exec.Command(args[0], args[1:]...)
					cmd.Stderr = &errb
					if out, err = cmd.Output(); err != nil {
						b.Fatalf("curl: %v: %s", err, errb.String())
					}
				} else {
					p := run(b, c.run, args...)
					p.mustSucceed(60 * time.Second)
					out = []byte(p.stdout.String())
				}
				var n int64
				var bytesPerSec float64
				if _, err := fmt.Sscan(string(out), &n, &bytesPerSec); err != nil || n != size {
					b.Fatalf("curl wrote %q (%v), want %d bytes and a rate", out, err, size)
				}
				gbits += bytesPerSec * 8 / 1e9
			}
			b.ReportMetric(gbits/float64(b.N), "Gbit/s")
		})
	}
}
