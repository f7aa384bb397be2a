package lab_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/lab"
)

// netns is a network namespace of the test's own, removed when it ends.
type netns struct {
	name string
	ip   string
}

// newNetns makes a namespace with loopback up.
func newNetns(t *testing.T, ip, suffix string) *netns {
	t.Helper()
	ns := &netns{name: fmt.Sprintf("ustlab%d%s", os.Getpid(), suffix), ip: ip}
	run(t, ip, "netns", "add", ns.name)
	t.Cleanup(func() { exec.Command(ip, "netns", "del", ns.name).Run() })
	ns.run(t, "link", "set", "lo", "up")
	return ns
}

// run runs ip ARGS in the namespace.
func (ns *netns) run(t *testing.T, args ...string) {
	t.Helper()
	run(t, ns.ip, append([]string{"-n", ns.name}, args...)...)
}

func run(t *testing.T, prog string, args ...string) {
	t.Helper()
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", prog, strings.Join(args, " "), err, out)
	}
}

// wire joins a and b with a veth pair, addresses addrA and addrB (/24)
// on it.
func wire(t *testing.T, a, b *netns, addrA, addrB string) {
	t.Helper()
	a.run(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b.name)
	a.run(t, "addr", "add", addrA+"/24", "dev", "v0")
	b.run(t, "addr", "add", addrB+"/24", "dev", "v1")
	a.run(t, "link", "set", "v0", "up")
	b.run(t, "link", "set", "v1", "up")
}

// needNetns skips t unless it may make network namespaces.
func needNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make network namespaces")
	}
	return testprog.Need(t, "ip")
}

// upLabIn starts the lab of the topology text in namespace ns (ustack lab
// up -d under ip netns exec, as on another machine) and takes it down
// when the test ends, checking that nothing is left.
func upLabIn(t *testing.T, ns *netns, name, text string) lab.Status {
	t.Helper()
	path := writeTopology(t, text)
	var out bytes.Buffer
	cmd := exec.Command(ns.ip, "netns", "exec", ns.name, ustackBin, "lab", "up", "-d", "--name", name, path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("lab up in %s: %v: %s", ns.name, err, out.String())
	}
	cl := &lab.Client{Name: name}
	st, err := cl.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, _, code := runUstack(t, "lab", "down", name); code != 0 {
			t.Errorf("lab down %s: status %d", name, code)
		}
		pids := []int{st.PID}
		for _, n := range st.Nodes {
			pids = append(pids, n.PID)
		}
		checkGone(t, name, pids...)
	})
	return st
}

// vxlanLab is a lab of one node whose eth0 is a VXLAN link.
func vxlanLab(name, node, addr, local, remote string) string {
	return fmt.Sprintf(`
name: %s
topology:
  nodes:
    %s: {interfaces: {eth0: %s/24}}
  links:
    - type: vxlan
      endpoint: %s:eth0
      local: %s
      remote: %s
      vni: 4242
      mtu: 1450
`, name, node, addr, node, local, remote)
}

// A lab split over two machines: two namespaces joined by a veth pair,
// a lab in each, one link between them carried in VXLAN.
func TestVXLANSplitLab(t *testing.T) {
	testbin.EndToEnd(t)
	ip := needNetns(t)
	west, east := newNetns(t, ip, "w"), newNetns(t, ip, "e")
	wire(t, west, east, "192.168.77.1", "192.168.77.2")
	upLabIn(t, west, "west", vxlanLab("west", "a", "10.9.0.1", "192.168.77.1", "192.168.77.2"))
	upLabIn(t, east, "east", vxlanLab("east", "b", "10.9.0.2", "192.168.77.2", "192.168.77.1"))
	ping(t, "west", "a", "10.9.0.2", 3)
	ping(t, "east", "b", "10.9.0.1", 3)
	transferBetween(t, "east", "b", "west", "a", "10.9.0.2:5001", 4<<20)
	transferBetween(t, "west", "a", "east", "b", "10.9.0.1:5002", 1<<20)
}

// A ustack node and the Linux kernel's own vxlan device, in a namespace
// of its own: ping both ways and TCP both ways with SHA-256.
func TestVXLANToKernel(t *testing.T) {
	testbin.EndToEnd(t)
	ip := needNetns(t)
	labNS, kern := newNetns(t, ip, "l"), newNetns(t, ip, "k")
	wire(t, labNS, kern, "192.168.78.1", "192.168.78.2")
	kern.run(t, "link", "add", "vx0", "type", "vxlan", "id", "4242", "local", "192.168.78.2", "remote", "192.168.78.1", "dstport", "4789", "dev", "v1")
	// A veth pair never computes the checksums a device leaves to the
	// hardware, and the inner TCP checksum of a vxlan device's frames is
	// such a one: the kernel computes it itself once the device has no
	// checksum offload (a real NIC computes it, encapsulated or not).
	run(t, ip, "netns", "exec", kern.name, testprog.Need(t, "ethtool"), "-K", "vx0", "tx", "off")
	kern.run(t, "addr", "add", "10.9.1.2/24", "dev", "vx0")
	kern.run(t, "link", "set", "vx0", "up")
	upLabIn(t, labNS, "vxk", vxlanLab("vxk", "a", "10.9.1.1", "192.168.78.1", "192.168.78.2"))
	ping(t, "vxk", "a", "10.9.1.2", 3)
	// The kernel pings the node.
	run(t, ip, "netns", "exec", kern.name, testprog.Need(t, "ping"), "-c", "2", "-W", "5", "10.9.1.1")

	// The kernel's side serves; the node fetches.
	const size = 4 << 20
	srv := exec.Command(ip, "netns", "exec", kern.name, labprog, "serve", "10.9.1.2:5001", fmt.Sprint(size))
	srvOut, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var srvErr bytes.Buffer
	srv.Stderr = &srvErr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	buf := make([]byte, 64)
	if n, err := srvOut.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "listening ") {
		t.Fatalf("the kernel-side server: %q %v %s", buf[:n], err, srvErr.String())
	}
	cl := execOn(t, "vxk", "a", "fetch", "10.9.1.2:5001")
	got := cl.line(t)
	cl.wait(t)
	if want := "bytes 4194304 sha256 " + streamSum(size); got != want {
		t.Errorf("from the kernel: %q, want %q", got, want)
	}
	if err := srv.Wait(); err != nil {
		t.Errorf("the kernel-side server: %v: %s", err, srvErr.String())
	}

	// The node serves; the kernel's side fetches.
	p := execOn(t, "vxk", "a", "serve", "10.9.1.1:5002", fmt.Sprint(size))
	if l := p.line(t); !strings.HasPrefix(l, "listening ") {
		t.Fatalf("server said %q", l)
	}
	fetch := exec.Command(ip, "netns", "exec", kern.name, labprog, "fetch", "10.9.1.1:5002")
	fetch.WaitDelay = 5 * time.Second
	out, err := fetch.Output()
	if err != nil {
		t.Fatalf("the kernel-side fetch: %v", err)
	}
	p.wait(t)
	if got, want := strings.TrimSpace(string(out)), "bytes 4194304 sha256 "+streamSum(size); got != want {
		t.Errorf("to the kernel: %q, want %q", got, want)
	}
}
