package programs_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wire is a real link between a stack under 'ustack run' and the Linux
// kernel's own stack in a network namespace the test made: the kernel side
// (peer) runs nginx, curl, iperf3, socat and ping as the other end.
type wire struct {
	flags          []string // ustack run's attachment flags
	stackNS        string   // where ustack run runs
	peerNS         string   // where the kernel peer's programs run
	stack4, stack6 string
	peer4, peer6   string
	// shared: the stack shares its address with a kernel (host mode), which
	// answers the peer's pings itself.
	shared bool
}

// run is the command line of 'ustack run' on w with args, inside w's
// stack namespace.
func (w wire) run(args ...string) (string, []string) {
	return inNS(w.stackNS, ustackBin, append(append(append([]string{"run"}, w.flags...), "--"), args...)...)
}

// inNS is name with args run in namespace ns.
func inNS(ns, name string, args ...string) (string, []string) {
	return "ip", append([]string{"netns", "exec", ns, name}, args...)
}

// ipCmd runs ip with args and fails the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNS makes a network namespace with loopback up, removed at cleanup.
func newNS(t *testing.T, name string) string {
	t.Helper()
	ns := fmt.Sprintf("ustk-%s-%d", name, os.Getpid())
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// tapWire: a tap device in a namespace; its kernel side is 10.78.0.1 and
// fd78::1, the stack on it 10.78.0.2 and fd78::2. ustack run runs in the
// same namespace, so the tap's kernel side is the peer.
func tapWire(t *testing.T) wire {
	ns := newNS(t, "tap")
	ipCmd(t, "-n", ns, "tuntap", "add", "t0", "mode", "tap")
	ipCmd(t, "-n", ns, "addr", "add", "10.78.0.1/24", "dev", "t0")
	ipCmd(t, "-n", ns, "-6", "addr", "add", "fd78::1/64", "dev", "t0", "nodad")
	ipCmd(t, "-n", ns, "link", "set", "t0", "up")
	return wire{flags: []string{"--net", "tap:t0", "--ip", "10.78.0.2/24", "--ip", "fd78::2/64"},
		stackNS: ns, peerNS: ns, stack4: "10.78.0.2", stack6: "fd78::2", peer4: "10.78.0.1", peer6: "fd78::1"}
}

// hostWire: a veth pair between two namespaces. The stack shares 10.79.0.2
// and fd79::2 with the kernel of one; the peer kernel in the other is
// 10.79.0.1 and fd79::1.
func hostWire(t *testing.T) wire {
	a, p := newNS(t, "host"), newNS(t, "peer")
	ipCmd(t, "-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", p)
	ipCmd(t, "-n", a, "addr", "add", "10.79.0.2/24", "dev", "v0")
	ipCmd(t, "-n", a, "-6", "addr", "add", "fd79::2/64", "dev", "v0", "nodad")
	ipCmd(t, "-n", p, "addr", "add", "10.79.0.1/24", "dev", "v1")
	ipCmd(t, "-n", p, "-6", "addr", "add", "fd79::1/64", "dev", "v1", "nodad")
	ipCmd(t, "-n", a, "link", "set", "v0", "up")
	ipCmd(t, "-n", p, "link", "set", "v1", "up")
	return wire{flags: []string{"--net", "host:v0", "--host-port", "8080", "--host-port", "9999/udp"},
		stackNS: a, peerNS: p, stack4: "10.79.0.2", stack6: "fd79::2", peer4: "10.79.0.1", peer6: "fd79::1", shared: true}
}

// writeStream writes size bytes of a seeded random stream to path without
// holding them in memory and returns their SHA-256.
func writeStream(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.NewChaCha8([32]byte{7}), size); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestWires: the stack on a tap and sharing a host interface, talking to
// the Linux kernel's stack with real programs on both sides: ping both ways,
// curl under ustack run fetching 1 GiB from nginx on the kernel (SHA-256),
// curl on the kernel fetching from nginx under ustack run over IPv4 and
// IPv6, UDP both ways with socat, and iperf3 for 10 s each way.
func TestWires(t *testing.T) {
	needRoot(t, "the wire tests make namespaces, a tap and a veth pair")
	for _, prog := range []string{"ip", "nginx", "curl", "iperf3", "socat", "ping", "sha256sum"} {
		need(t, prog)
	}
	size := int64(1 << 30)
	seconds := "10"
	if raceEnabled {
		size, seconds = 64<<20, "2"
	}
	dir, conf, wantSmall := nginxSetup(t, nginxSize())
	wantBig := writeStream(t, filepath.Join(dir, "www", "huge"), size)

	for _, c := range []struct {
		name string
		make func(*testing.T) wire
	}{{"tap", tapWire}, {"host", hostWire}} {
		t.Run(c.name, func(t *testing.T) {
			w := c.make(t)
			stackRun := func(args ...string) *proc {
				t.Helper()
				name, a := w.run(args...)
				return start(t, nil, name, a...)
			}
			peer := func(args ...string) *proc {
				t.Helper()
				name, a := inNS(w.peerNS, args[0], args[1:]...)
				return start(t, nil, name, a...)
			}

			t.Run("stack pings kernel", func(t *testing.T) {
				for _, dst := range []string{w.peer4, w.peer6} {
					p := stackRun("ping", "-c", "3", "-i", "0.2", "-W", "5", dst)
					p.mustSucceed(30 * time.Second)
					if !strings.Contains(p.stdout.String(), "3 received") {
						t.Errorf("ping %s under ustack run:\n%s", dst, p.stdout.String())
					}
				}
			})

			t.Run("curl on the stack fetches from nginx on the kernel", func(t *testing.T) {
				srv := peer("nginx", "-c", conf, "-e", filepath.Join(dir, "error.log"))
				defer srv.kill()
				waitHTTP(t, w.peerNS, "http://"+w.peer4+":8080/index.html")
				start := time.Now()
				p := stackRun("sh", "-c", "curl -sS --max-time 300 http://"+w.peer4+":8080/huge | sha256sum")
				p.mustSucceed(6 * time.Minute)
				if got := strings.Fields(p.stdout.String()); len(got) == 0 || got[0] != wantBig {
					t.Fatalf("SHA-256 of %d bytes fetched under ustack run: %q, want %s; stderr %s", size, p.stdout.String(), wantBig, p.stderr.String())
				}
				t.Logf("%s: %d MiB from the kernel's nginx in %v", c.name, size>>20, time.Since(start).Round(time.Millisecond))
				p = stackRun("curl", "-sS", "--max-time", "30", "http://["+w.peer6+"]:8080/index.html")
				p.mustSucceed(time.Minute)
				if p.stdout.String() != "ready\n" {
					t.Errorf("curl over IPv6 got %q", p.stdout.String())
				}
			})

			t.Run("curl on the kernel fetches from nginx on the stack", func(t *testing.T) {
				srv := stackRun("nginx", "-c", conf, "-e", filepath.Join(dir, "error.log"))
				defer srv.kill()
				waitHTTP(t, w.peerNS, "http://"+w.stack4+":8080/index.html")
				for _, url := range []string{"http://" + w.stack4 + ":8080/big", "http://[" + w.stack6 + "]:8080/big"} {
					p := peer("sh", "-c", "curl -sS --max-time 120 "+url+" | sha256sum")
					p.mustSucceed(3 * time.Minute)
					if got := strings.Fields(p.stdout.String()); len(got) == 0 || got[0] != wantSmall {
						t.Errorf("kernel curl %s: SHA-256 %q, want %s", url, p.stdout.String(), wantSmall)
					}
				}
				// The kernel pings the stack's address; a shared address is
				// the host kernel's to answer, and the stack must not answer
				// as well (ping would report duplicates).
				for _, dst := range []string{w.stack4, w.stack6} {
					p := peer("ping", "-c", "3", "-i", "0.2", "-W", "5", dst)
					p.mustSucceed(30 * time.Second)
					if out := p.stdout.String(); !strings.Contains(out, "3 received") || strings.Contains(out, "DUP!") {
						t.Errorf("kernel ping %s:\n%s", dst, out)
					}
				}
			})

			t.Run("udp both ways", func(t *testing.T) {
				echo := peer("socat", "UDP4-RECVFROM:9999,fork,reuseaddr", "PIPE")
				defer echo.kill()
				time.Sleep(300 * time.Millisecond)
				p := stackRunInput(t, w, "to-kernel\n", "socat", "-T", "3", "-", "UDP4:"+w.peer4+":9999")
				if p != "to-kernel\n" {
					t.Errorf("echo from the kernel's socat: %q", p)
				}
				srv := stackRun("socat", "UDP6-RECVFROM:9999,fork,reuseaddr", "PIPE")
				defer srv.kill()
				time.Sleep(time.Second)
				name, a := inNS(w.peerNS, "socat", "-T", "3", "-", "UDP6:["+w.stack6+"]:9999")
				cmd := exec.Command(name, a...)
				cmd.Stdin = strings.NewReader("to-stack\n")
				out, err := cmd.Output()
				if err != nil || string(out) != "to-stack\n" {
					t.Errorf("echo from socat under ustack run over IPv6: %q %v", out, err)
				}
			})

			t.Run("iperf3", func(t *testing.T) {
				for _, reverse := range []bool{false, true} {
					srv := peer("iperf3", "-s", "-1", "--forceflush", "-B", w.peer4, "-p", "5201")
					srv.waitOutput("Server listening", 30*time.Second)
					args := []string{"iperf3", "-c", w.peer4, "-p", "5201", "-t", seconds, "-J"}
					dir := "stack to kernel"
					if reverse {
						args = append(args, "-R")
						dir = "kernel to stack"
					}
					p := stackRun(args...)
					p.mustSucceed(2 * time.Minute)
					r := parseIperf(t, []byte(p.stdout.String()))
					t.Logf("%s: iperf3 %s: %.2f Gbit/s", c.name, dir, r.End.SumReceived.BitsPerSecond/1e9)
					srv.kill()
				}
			})
		})
	}
}

// stackRunInput runs a program under ustack run on w with input on its
// stdin and returns what it printed.
func stackRunInput(t *testing.T, w wire, input string, args ...string) string {
	t.Helper()
	name, a := w.run(args...)
	cmd := exec.Command(name, a...)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(input)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("%s under ustack run: %v; stderr %s", args[0], err, stderr.String())
	}
	return string(out)
}

// waitHTTP waits until url answers a curl run in namespace ns.
func waitHTTP(t *testing.T, ns, url string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		name, a := inNS(ns, "curl", "-sf", "--max-time", "2", url)
		if exec.Command(name, a...).Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within 30 s", url)
		}
	}
}
