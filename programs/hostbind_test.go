package programs_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/internal/testwait"
)

// Binds on --net host: a program under 'ustack run --net host:DEV' that
// binds a port gets it from the host, as root (the stack reserves it
// itself) and as nobody (through a 'ustack portd' the test starts). DEV
// (10.76.0.2/24) is a veth the test makes in the root namespace; its peer
// (10.76.0.1/24) sits in a namespace of the test's own, where curl is the
// kernel peer.
const (
	bindHostAddr = "10.76.0.2"
	bindPeerAddr = "10.76.0.1"
	nobodyUID    = 65534
)

type hostBindNet struct {
	dev, ns string
	dir     string // world-readable: ustack, the portd socket, served files
	ustack  string // a copy of ustack that nobody may run
	ip      string
}

func setupHostBind(t *testing.T) *hostBindNet {
	t.Helper()
	needRoot(t, "the host attachment and ustack portd need CAP_NET_ADMIN and CAP_NET_RAW")
	ipPath := need(t, "ip")
	if _, err := hostports.TableExists("ustack_0"); err != nil {
		t.Skip("host attachment tests need nftables in the kernel: ", err)
	}
	n := &hostBindNet{ip: ipPath, dev: fmt.Sprintf("ustb%d", os.Getpid()%100000), ns: fmt.Sprintf("ustack-hostbind-%d", os.Getpid())}
	peer := fmt.Sprintf("ustc%d", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipPath, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", n.ns)
	t.Cleanup(func() { exec.Command(ipPath, "netns", "del", n.ns).Run() })
	run("link", "add", n.dev, "type", "veth", "peer", "name", peer, "netns", n.ns)
	t.Cleanup(func() { exec.Command(ipPath, "link", "del", n.dev).Run() })
	run("addr", "add", bindHostAddr+"/24", "dev", n.dev)
	run("link", "set", n.dev, "up")
	run("-n", n.ns, "addr", "add", bindPeerAddr+"/24", "dev", peer)
	run("-n", n.ns, "link", "set", peer, "up")
	run("-n", n.ns, "link", "set", "lo", "up")

	dir, err := os.MkdirTemp("", "ustack-hostbind")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	n.dir = dir
	n.ustack = filepath.Join(dir, "ustack")
	bin, err := os.ReadFile(ustackBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.ustack, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

// hostFreePort is a TCP port free on the host's address now.
func (n *hostBindNet) hostFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", bindHostAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hostFreePortBelowEphemeral returns a TCP port free on the host below its
// ephemeral range, where no block a run holds can lie, other than those
// in except.
func (n *hostBindNet) hostFreePortBelowEphemeral(t *testing.T, except ...int) int {
	t.Helper()
	first, _ := hostports.EphemeralRange()
	for port := first - 1; port >= 1024 && port >= first-2000; port-- {
		if slices.Contains(except, port) {
			continue
		}
		if l, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", bindHostAddr, port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatalf("no free TCP port in the 2000 below the ephemeral range (from %d)", first)
	return 0
}

// startPortd runs 'ustack portd' with a policy that grants nobody TCP port
// granted (and an ephemeral block) on the veth, and returns its socket.
func (n *hostBindNet) startPortd(t *testing.T, granted int) string {
	t.Helper()
	policy := filepath.Join(n.dir, "portd.policy")
	text := fmt.Sprintf("allow user:%d %s tcp,udp %d,ephemeral\n", nobodyUID, n.dev, granted)
	if err := os.WriteFile(policy, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(n.dir, "portd.sock")
	p := start(t, nil, ustackBin, "portd", "--socket", sock, "--policy", policy)
	testwait.ForNil(t, "ustack portd to listen on "+sock, func() error {
		select {
		case <-p.done:
			t.Fatalf("ustack portd exited: %s", tail(p.stderr.String()))
		default:
		}
		_, err := os.Stat(sock)
		return err
	})
	return sock
}

// runAs starts 'ustack run --net host:DEV [--portd SOCK] -- args' as uid
// (0: root, without portd), in dir, with stdin.
func (n *hostBindNet) runAs(t *testing.T, uid int, sock, dir string, stdin io.Reader, args ...string) *proc {
	t.Helper()
	flags := []string{"run", "--net", "host:" + n.dev}
	if uid != 0 {
		flags = append(flags, "--portd", sock)
	}
	cmd := exec.Command(n.ustack, append(append(flags, "--"), args...)...)
	cmd.Env = cleanEnv()
	cmd.Dir = dir
	cmd.Stdin = stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
		cmd.Env = append(cmd.Env, "HOME="+dir)
	}
	cmd.WaitDelay = 5 * time.Second
	p := &proc{t: t, name: "ustack run " + filepath.Base(args[0]), cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ustack run: %v", err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

// curlFromPeer fetches url with curl in the namespace until it answers
// with want, failing if p exits first.
func (n *hostBindNet) curlFromPeer(t *testing.T, p *proc, url, want string) {
	t.Helper()
	curl := need(t, "curl")
	testwait.ForNil(t, url+" from the namespace", func() error {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) while the test waited for %s; stderr:\n%s", p.name, p.cmd.ProcessState, url, tail(p.stderr.String()))
		default:
		}
		out, err := exec.Command(n.ip, "netns", "exec", n.ns, curl, "-sS", "--fail", "--max-time", "5", url).CombinedOutput()
		if err != nil {
			return fmt.Errorf("curl %s: %v: %s", url, err, out)
		}
		if string(out) != want {
			return fmt.Errorf("curl %s: %q, want %q", url, out, want)
		}
		return nil
	})
}

// hostBindErr is what the host's own bind of TCP port gets now.
func hostBindErr(port int) error {
	l, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", bindHostAddr, port))
	if err == nil {
		l.Close()
	}
	return err
}

// mustBeHeld fails unless the host's kernel is refused port.
func mustBeHeld(t *testing.T, port int) {
	t.Helper()
	if err := hostBindErr(port); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("the host's bind of port %d while the program holds it: %v, want EADDRINUSE", port, err)
	}
}

// waitFree waits until the host may bind port again.
func waitFree(t *testing.T, port int, after string) {
	t.Helper()
	testwait.ForNil(t, fmt.Sprintf("port %d free on the host %s", port, after), func() error { return hostBindErr(port) })
}

// systemPython is Debian's python3, which nobody may run (a python3 found
// first on root's PATH may live in root's home).
func systemPython(t *testing.T) string {
	t.Helper()
	const debian = "/usr/bin/python3"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	return need(t, "python3")
}

type hostBindUser struct {
	name string
	uid  int
}

var hostBindUsers = []hostBindUser{{"root", 0}, {"nobody via portd", nobodyUID}}

// TestHostBindServers: python3's http.server and nginx under 'ustack run
// --net host:DEV', listening on a port chosen at run time, serve curl in
// the peer namespace; the host cannot bind the port meanwhile, and can
// once the server is killed with SIGKILL.
func TestHostBindServers(t *testing.T) {
	python := systemPython(t)
	nginx := need(t, "nginx")
	need(t, "curl")
	n := setupHostBind(t)
	port := n.hostFreePort(t)
	sock := n.startPortd(t, port)

	for _, u := range hostBindUsers {
		t.Run("python http.server as "+u.name, func(t *testing.T) {
			www := filepath.Join(n.dir, "www-python-"+strconv.Itoa(u.uid))
			if err := os.MkdirAll(www, 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(www, "hello.txt"), []byte("hello from python\n"), 0o644)
			p := n.runAs(t, u.uid, sock, www, nil, python, "-m", "http.server", "--bind", "0.0.0.0", strconv.Itoa(port))
			n.curlFromPeer(t, p, fmt.Sprintf("http://%s:%d/hello.txt", bindHostAddr, port), "hello from python\n")
			mustBeHeld(t, port)
			p.kill() // SIGKILL to ustack run and the program
			waitFree(t, port, "after SIGKILL")
		})
		t.Run("nginx as "+u.name, func(t *testing.T) {
			dir := filepath.Join(n.dir, "nginx-"+strconv.Itoa(u.uid))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			conf := nginxConf(t, dir, u.uid == 0)
			text, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			// One listener, on the port of this run (the shared veth has
			// no IPv6 address).
			text = []byte(strings.Replace(strings.Replace(string(text), "listen [::]:8080;", "", 1), "listen 8080;", fmt.Sprintf("listen %d;", port), 1))
			if err := os.WriteFile(conf, text, 0o644); err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(dir, "www"), 0o755)
			os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("hello from nginx\n"), 0o644)
			if u.uid != 0 {
				filepath.Walk(dir, func(path string, _ os.FileInfo, _ error) error { return os.Chown(path, u.uid, u.uid) })
			}
			p := n.runAs(t, u.uid, sock, dir, nil, nginx, "-c", conf, "-e", filepath.Join(dir, "error.log"))
			n.curlFromPeer(t, p, fmt.Sprintf("http://%s:%d/index.html", bindHostAddr, port), "hello from nginx\n")
			mustBeHeld(t, port)
			p.kill()
			waitFree(t, port, "after SIGKILL")
		})
	}
}

// bindScript binds TCP port 0.0.0.0:PORT and listens; it prints "bound",
// or "bind ERRNO" and exits; on a line of input it closes the socket and
// prints "closed", and exits on the next.
const bindScript = `
import socket, sys
s = socket.socket()
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.listen()
except OSError as e:
    print("bind", e.errno, flush=True)
    sys.exit(0)
print("bound", flush=True)
sys.stdin.readline()
s.close()
print("closed", flush=True)
sys.stdin.readline()
`

// TestHostBindErrors: a bind under 'ustack run --net host:DEV' fails with
// EADDRINUSE when a socket of the host's kernel has the port, and through
// portd with EACCES when the policy does not grant it; a port bound and
// then closed is the host's again while the program goes on.
func TestHostBindErrors(t *testing.T) {
	python := systemPython(t)
	n := setupHostBind(t)
	// Below the kernel's ephemeral range: each run holds a random block
	// of that range for its own connects, and a port that fell in it would
	// stay held after the program closed its socket, until the run ends.
	granted := n.hostFreePortBelowEphemeral(t)
	sock := n.startPortd(t, granted)
	script := filepath.Join(n.dir, "bind.py")
	if err := os.WriteFile(script, []byte(bindScript), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, u := range hostBindUsers {
		t.Run("kernel holds the port, as "+u.name, func(t *testing.T) {
			l, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", bindHostAddr, granted))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			p := n.runAs(t, u.uid, sock, n.dir, nil, python, script, strconv.Itoa(granted))
			p.waitOutput(fmt.Sprintf("bind %d", syscall.EADDRINUSE))
		})
		t.Run("close gives the port back, as "+u.name, func(t *testing.T) {
			in, feed, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer feed.Close()
			p := n.runAs(t, u.uid, sock, n.dir, in, python, script, strconv.Itoa(granted))
			in.Close() // the program has its copy
			p.waitOutput("bound")
			mustBeHeld(t, granted)
			fmt.Fprintln(feed)
			p.waitOutput("closed")
			waitFree(t, granted, "after the program closed its socket")
			fmt.Fprintln(feed)
			p.mustSucceed(30 * time.Second)
		})
	}
	t.Run("policy refuses the port, as nobody via portd", func(t *testing.T) {
		// Not from the kernel's ephemeral range: the policy grants
		// nobody a block of it, and a port there may be in that block.
		refused := n.hostFreePortBelowEphemeral(t, granted)
		p := n.runAs(t, nobodyUID, sock, n.dir, nil, python, script, strconv.Itoa(refused))
		p.waitOutput(fmt.Sprintf("bind %d", syscall.EACCES))
		if err := hostBindErr(refused); err != nil {
			t.Errorf("port %d, refused to the program, on the host: %v, want it free", refused, err)
		}
	})
}
