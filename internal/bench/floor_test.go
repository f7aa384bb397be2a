package main

import (
	"context"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testbin"
)

// TestRelayFloor runs the relay floor, in Go both ways and in C, against
// an echo server and checks that the exchanges it reports went through
// the relay to the server: the server saw at least 14 bytes for each.
func TestRelayFloor(t *testing.T) {
	testbin.EndToEnd(t)
	dir := t.TempDir()
	bin := buildBench(t, dir)
	cc, ccErr := exec.LookPath("cc")
	cRelay := filepath.Join(dir, "relay-floor")
	relays := []struct {
		name string
		argv func(port string) []string
	}{
		{"netpoll", func(port string) []string {
			return []string{bin, "relay-floor", "127.0.0.1:" + port, "300ms", "netpoll"}
		}},
		{"thread", func(port string) []string {
			return []string{bin, "relay-floor", "127.0.0.1:" + port, "300ms", "thread"}
		}},
		{"C", func(port string) []string { return []string{cRelay, port, "300ms", bin} }},
	}
	result := regexp.MustCompile(`^p50_us=[0-9.]+ n=([0-9]+)\n$`)
	for _, r := range relays {
		t.Run(r.name, func(t *testing.T) {
			if r.name == "C" {
				if ccErr != nil {
					t.Skip("cc is not installed: apt-get install gcc")
				}
				if out, err := exec.Command(cc, "-O2", "-o", cRelay, "testdata/relay_floor.c").CombinedOutput(); err != nil {
					t.Fatalf("cc: %v\n%s", err, out)
				}
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var echoed int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				echoed, _ = io.Copy(c, c)
			}()
			argv := r.argv(strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
			// A relay that moved nothing would leave its client waiting.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
			if err != nil {
				t.Fatalf("%v: %v\n%s", argv, err, out)
			}
			m := result.FindSubmatch(out)
			if m == nil {
				t.Fatalf("%v printed %q, want p50_us=… n=…", argv, out)
			}
			n, _ := strconv.Atoi(string(m[1]))
			// The relay's process has ended, and with it its
			// connection to the server: the echo ends.
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the echo server's connection did not end after the relay did")
			}
			if n == 0 || echoed < int64(n)*rrSize {
				t.Fatalf("%d exchanges reported, %d bytes echoed: want at least %d", n, echoed, n*rrSize)
			}
		})
	}
}
