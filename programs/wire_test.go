package programs_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/portd"
)

// wire is a real link between a stack under 'ustack run' and the Linux
// kernel's own stack in a network namespace the test made: the kernel side
// (peer) runs nginx, curl, iperf3, socat and ping as the other end.
type wire struct {
	flags []string // ustack run's attachment flags
	// ustack is how ustack is started: its path, after the command that
	// makes it another user when the stack is not root's (nil: ustackBin,
	// as root).
	ustack         []string
	stackNS        string // where ustack run runs
	peerNS         string // where the kernel peer's programs run
	stack4, stack6 string
	peer4, peer6   string
	// shared: the stack shares its address with a kernel (host mode), which
	// answers the peer's pings itself.
	shared bool
	// nginxConf and nginxLog are the configuration and error log of nginx
	// under ustack run when the stack is not root's ("": the test's own).
	nginxConf, nginxLog string
	// released, if set, checks at the end that everything the variant's
	// stacks held on the host was released.
	released func(*testing.T)
	// idle, if set, waits until the stacks that went before have let go
	// of the host's ports: portd releases a killed stack's session when it
	// notices the stack is gone, and until then refuses its ports to the
	// next stack.
	idle func(*testing.T)
}

// run is the command line of 'ustack run' on w with args, inside w's
// stack namespace. The stacks before it are gone by then.
func (w wire) run(t *testing.T, args ...string) (string, []string) {
	t.Helper()
	if w.idle != nil {
		w.idle(t)
	}
	u := w.ustack
	if len(u) == 0 {
		u = []string{ustackBin}
	}
	return inNS(w.stackNS, u[0], slices.Concat(u[1:], []string{"run"}, w.flags, []string{"--"}, args)...)
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
// same namespace, so the tap's kernel side is the peer. The stack
// busy-polls the tap (--busy-poll), so that option meets real programs
// here; the host variants read their packet socket the default way.
func tapWire(t *testing.T) wire {
	ns := newNS(t, "tap")
	ipCmd(t, "-n", ns, "tuntap", "add", "t0", "mode", "tap")
	ipCmd(t, "-n", ns, "addr", "add", "10.78.0.1/24", "dev", "t0")
	ipCmd(t, "-n", ns, "-6", "addr", "add", "fd78::1/64", "dev", "t0", "nodad")
	ipCmd(t, "-n", ns, "link", "set", "t0", "up")
	return wire{flags: []string{"--net", "tap:t0", "--busy-poll", "200us", "--ip", "10.78.0.2/24", "--ip", "fd78::2/64"},
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

// nobody is the user the stacks of hostPortdWire run as.
const nobody = 65534

// hostPortdWire: hostWire with every stack run by nobody through ustack
// portd, which runs as root in the stack's namespace. The policy grants
// nobody on v0 what the test uses and nothing else: tcp 8080 (nginx), udp
// 9999 (socat) and one block of 64 ephemeral ports (what a stack asks
// for). Nobody's nginx serves site/www.
func hostPortdWire(t *testing.T, site string) wire {
	w := hostWire(t)
	// nobody cannot enter the test's temporary directories: a directory it
	// can read holds its copy of ustack, the policy and portd's socket.
	dir := publicDir(t)
	bin := filepath.Join(dir, "ustack")
	copyFile(t, ustackBin, bin, 0o755)
	policy := filepath.Join(dir, "portd.policy")
	rules := fmt.Sprintf("allow user:%[1]d v0 tcp 8080\nallow user:%[1]d v0 udp 9999\nallow user:%[1]d v0 tcp,udp ephemeral:64\n", nobody)
	if err := os.WriteFile(policy, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "portd", "portd.sock")
	name, a := inNS(w.stackNS, bin, "portd", "--socket", sock, "--policy", policy)
	pd := start(t, nil, name, a...)
	pd.waitOutput("portd: serving on")

	// nobody's own directory: its stacks' control sockets, and nginx's
	// pid, logs and temporary files.
	home := filepath.Join(dir, "nobody")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(site, "www"), filepath.Join(home, "www")); err != nil {
		t.Fatal(err)
	}
	w.nginxConf, w.nginxLog = nginxConf(t, home, false), filepath.Join(home, "error.log")
	if err := os.Chown(home, nobody, nobody); err != nil {
		t.Fatal(err)
	}

	w.ustack = []string{"setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups",
		"env", "XDG_RUNTIME_DIR=" + home, bin}
	w.flags = append(w.flags, "--portd", sock)
	w.released = func(t *testing.T) { portdReleased(t, pd, sock, w.stackNS) }
	w.idle = func(t *testing.T) {
		t.Helper()
		// portd's status stops listing a session before its ports are
		// free; its log's "released everything" comes after.
		testwait.ForNil(t, "portd to release every session", func() error {
			opened, released := portdSessions(pd.stderr.String())
			for id := range opened {
				if !released[id] {
					return fmt.Errorf("session %s not released yet", id)
				}
			}
			return nil
		})
	}
	return w
}

// portdReleased checks that portd holds nothing for anyone once the
// variant's stacks are gone, that no nftables table of ustack is left in
// the stack's namespace, with portd running and after it stops, and that
// portd refused nothing the test did.
func portdReleased(t *testing.T, pd *proc, sock, ns string) {
	t.Helper()
	err := testwait.Until(t.Context(), "portd to release everything after the last stack ended", func() error {
		hs, err := portd.Status(sock)
		if err != nil {
			t.Fatalf("portd status: %v", err)
		}
		if tables := ustackTables(t, ns); len(hs) != 0 || len(tables) != 0 {
			return fmt.Errorf("portd has holders %+v and the namespace tables %v", hs, tables)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	pd.signal(syscall.SIGTERM)
	pd.mustSucceed(30 * time.Second)
	if tables := ustackTables(t, ns); len(tables) != 0 {
		t.Errorf("after portd stopped, the namespace has tables %v", tables)
	}
	log := pd.stderr.String()
	for _, m := range portdSession.FindAllStringSubmatch(log, -1) {
		if m[2] != strconv.Itoa(nobody) {
			t.Errorf("portd's session %s was not nobody's: %s", m[1], m[0])
		}
	}
	opened, released := portdSessions(log)
	if len(opened) == 0 || !maps.Equal(opened, released) {
		t.Errorf("portd's log has sessions %v opened and %v released, want the same:\n%s", slices.Sorted(maps.Keys(opened)), slices.Sorted(maps.Keys(released)), log)
	}
	t.Logf("portd served %d sessions of nobody, all released", len(opened))
	if strings.Contains(log, "portd: refused:") || strings.Contains(log, "refused a frame") {
		t.Errorf("portd refused something:\n%s", log)
	}
}

// portdSession matches the lines of portd's log that open a session (with
// its ports) and that end it: session ID, uid, holds or released.
var portdSession = regexp.MustCompile(`portd: session (\d+): \S+ \(uid (\d+)\) pid \d+ (holds \S+ on \S+ \(tcp|released everything)`)

// portdSessions reads portd's log: the sessions that held ports, and those
// released.
func portdSessions(log string) (opened, released map[string]bool) {
	opened, released = map[string]bool{}, map[string]bool{}
	for _, m := range portdSession.FindAllStringSubmatch(log, -1) {
		if strings.HasPrefix(m[3], "holds") {
			opened[m[1]] = true
		} else {
			released[m[1]] = true
		}
	}
	return opened, released
}

// ustackTables lists the nftables tables of ustack (hostports.TablePrefix)
// in the network namespace ns.
func ustackTables(t *testing.T, ns string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	all, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("listing the nftables tables of %s: %v", ns, err)
	}
	var tables []string
	for _, tb := range all {
		if strings.HasPrefix(tb.Name, hostports.TablePrefix) {
			tables = append(tables, tb.Name)
		}
	}
	return tables
}

// publicDir is a fresh directory that every user can read, removed at
// cleanup.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ustack-wires-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyFile copies src to dst, made with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Chmod(perm); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
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

// TestWires: the stack on a tap, sharing a host interface as root, and
// sharing it as nobody through ustack portd, talking to the Linux kernel's
// stack with real programs on both sides: ping both ways, curl under ustack
// run fetching 1 GiB from nginx on the kernel (SHA-256), curl on the kernel
// fetching from nginx under ustack run over IPv4 and IPv6, UDP both ways
// with socat, and iperf3 for 10 s each way.
func TestWires(t *testing.T) {
	needRoot(t, "the wire tests make namespaces, a tap and a veth pair")
	for _, prog := range []string{"ip", "ss", "nginx", "curl", "iperf3", "socat", "ping", "sh", "sha256sum", "setpriv", "env"} {
		need(t, prog)
	}
	size := int64(1 << 30)
	seconds := "10"
	if raceEnabled {
		size, seconds = 64<<20, "2"
	}
	// Readable by everyone: nobody's nginx serves www too.
	dir := publicDir(t)
	conf, wantSmall := nginxSite(t, dir, nginxSize())
	wantBig := writeStream(t, filepath.Join(dir, "www", "huge"), size)

	for _, c := range []struct {
		name string
		make func(*testing.T) wire
	}{
		{"tap", tapWire},
		{"host", hostWire},
		{"host-portd", func(t *testing.T) wire { return hostPortdWire(t, dir) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := c.make(t)
			stackConf, stackLog := conf, filepath.Join(dir, "error.log")
			if w.nginxConf != "" {
				stackConf, stackLog = w.nginxConf, w.nginxLog
			}
			stackRun := func(args ...string) *proc {
				t.Helper()
				name, a := w.run(t, args...)
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
				srv := stackRun("nginx", "-c", stackConf, "-e", stackLog)
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
				waitUDPBound(t, w.peerNS, 9999)
				p := stackRunInput(t, w, "to-kernel\n", "socat", "-T", "3", "-", "UDP4:"+w.peer4+":9999")
				if p != "to-kernel\n" {
					t.Errorf("echo from the kernel's socat: %q", p)
				}
				srv := stackRun("socat", "UDP6-RECVFROM:9999,fork,reuseaddr", "PIPE")
				defer srv.kill()
				// Until socat under ustack run listens, the stack refuses
				// the datagram (ICMP port unreachable) and socat here
				// fails: send again.
				testwait.ForNil(t, "the echo from socat under ustack run over IPv6", func() error {
					name, a := inNS(w.peerNS, "socat", "-T", "3", "-", "UDP6:["+w.stack6+"]:9999")
					cmd := exec.Command(name, a...)
					cmd.Stdin = strings.NewReader("to-stack\n")
					out, err := cmd.Output()
					if err != nil || string(out) != "to-stack\n" {
						return fmt.Errorf("%q %v", out, err)
					}
					return nil
				})
			})

			t.Run("iperf3", func(t *testing.T) {
				for _, reverse := range []bool{false, true} {
					srv := peer("iperf3", "-s", "-1", "--forceflush", "-B", w.peer4, "-p", "5201")
					srv.waitOutput("Server listening")
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

			if w.released != nil {
				t.Run("released", w.released)
			}
		})
	}
}

// stackRunInput runs a program under ustack run on w with input on its
// stdin and returns what it printed.
func stackRunInput(t *testing.T, w wire, input string, args ...string) string {
	t.Helper()
	name, a := w.run(t, args...)
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
	testwait.ForNil(t, url+" to answer", func() error {
		name, a := inNS(ns, "curl", "-sSf", "--max-time", "2", url)
		if out, err := exec.Command(name, a...).CombinedOutput(); err != nil {
			return fmt.Errorf("curl: %v: %s", err, out)
		}
		return nil
	})
}

// waitUDPBound waits until a UDP socket is bound to port in namespace ns.
func waitUDPBound(t *testing.T, ns string, port int) {
	t.Helper()
	testwait.ForNil(t, fmt.Sprintf("a UDP socket on port %d in %s", port, ns), func() error {
		name, a := inNS(ns, "ss", "-Hlun", fmt.Sprintf("sport = :%d", port))
		out, err := exec.Command(name, a...).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) == 0 {
			return fmt.Errorf("ss: %v %q", err, out)
		}
		return nil
	})
}
