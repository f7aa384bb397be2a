package hostshare

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/hostports"
)

// The tests share a veth between the root namespace's kernel and the
// share: dev (10.76.0.2/24, fd76::2/64) is the "host interface", made by
// the test in the root namespace; its peer sits in a namespace of the
// test's own (10.76.0.1/24) and sends the datagrams the share should or
// should not see.
const (
	shareAddr4 = "10.76.0.2"
	peerAddr4  = "10.76.0.1"
)

type testNet struct {
	dev string
	ns  string // the peer's namespace, as /run/netns/NAME
}

func setup(t *testing.T) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("host share tests need root (CAP_NET_ADMIN and CAP_NET_RAW)")
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("host share tests need ip from iproute2: ", err)
	}
	if _, err := hostports.TableExists("ustack_0"); err != nil {
		t.Skip("host share tests need nftables in the kernel: ", err)
	}
	n := &testNet{dev: fmt.Sprintf("ustsh%d", os.Getpid()%100000)}
	name := fmt.Sprintf("ustack-share-%d", os.Getpid())
	n.ns = "/run/netns/" + name
	peer := fmt.Sprintf("ustsp%d", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipPath, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() { exec.Command(ipPath, "netns", "del", name).Run() })
	run("link", "add", n.dev, "type", "veth", "peer", "name", peer, "netns", name)
	t.Cleanup(func() { exec.Command(ipPath, "link", "del", n.dev).Run() })
	run("addr", "add", shareAddr4+"/24", "dev", n.dev)
	run("-6", "addr", "add", "fd76::2/64", "dev", n.dev, "nodad")
	run("link", "set", n.dev, "up")
	run("-n", name, "addr", "add", peerAddr4+"/24", "dev", peer)
	run("-n", name, "link", "set", peer, "up")
	return n
}

// peerUDP returns a UDP socket in the peer's namespace.
func (n *testNet) peerUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	var c net.PacketConn
	var err error
	inNetns(t, n.ns, func() { c, err = net.ListenPacket("udp4", peerAddr4+":0") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// inNetns runs f on a thread in the network namespace at path: sockets it
// makes stay in that namespace.
func inNetns(t *testing.T, path string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer own.Close()
	ns, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	f()
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and ends with the goroutine.
		t.Fatalf("back to the test's namespace: %v", err)
	}
	runtime.UnlockOSThread()
}

// nextUDPPort reads frames from the share's packet socket until one is a
// UDP datagram to one of ports, and returns its port. The socket's receive
// timeout bounds the wait: the datagram is already on its way.
func nextUDPPort(t *testing.T, s *Share, ports ...uint16) uint16 {
	t.Helper()
	fd := s.Packet().Fd()
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10})
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("reading the packet socket for UDP to %v: %v", ports, err)
		}
		f := buf[:n]
		const vnet, eth = 10, 14
		if len(f) < vnet+eth+20+8 || binary.BigEndian.Uint16(f[vnet+12:]) != 0x0800 {
			continue
		}
		ip := f[vnet+eth:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != unix.IPPROTO_UDP || len(ip) < ihl+8 {
			continue
		}
		if dport := binary.BigEndian.Uint16(ip[ihl+2:]); slices.Contains(ports, dport) {
			return dport
		}
	}
}

func send(t *testing.T, c *net.UDPConn, port uint16) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(netip.MustParseAddr(shareAddr4), port)); err != nil {
		t.Fatal(err)
	}
}

func bindable(network string, port uint16) error {
	addr := fmt.Sprintf("%s:%d", shareAddr4, port)
	if network == "udp" {
		c, err := net.ListenPacket("udp4", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	l, err := net.Listen("tcp4", addr)
	if err == nil {
		l.Close()
	}
	return err
}

func firewallHas(t *testing.T, s *Share, p Port) bool {
	t.Helper()
	ports, err := s.fw.Ports(p.Proto)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(ports, p.Port)
}

// TestShare holds a share, adds ports to it from several goroutines at
// once while it is live, releases one, and closes it: each time the host
// reservation, the nftables set and the packet filter agree.
func TestShare(t *testing.T) {
	n := setup(t)
	addrs := []netip.Addr{netip.MustParseAddr(shareAddr4), netip.MustParseAddr("fd76::2")}
	fixed := Port{hostports.TCP, 7001}
	s, err := Open(Config{Iface: n.dev, Addrs: addrs, Ephemeral: 4, Ports: []Port{fixed, {hostports.UDP, 7002}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ok, err := hostports.TableExists(hostports.StackTable()); err != nil || !ok {
		t.Fatalf("table %s after Open: %v, %v", hostports.StackTable(), ok, err)
	}
	first, count := s.Ephemeral()
	if count != 4 || !s.Has(Port{hostports.UDP, first + 3}) || !s.Has(fixed) {
		t.Fatalf("held tcp %v, udp %v (ephemeral %d+%d); want 7001, 7002 and 4 ephemeral of each", s.Ports(hostports.TCP), s.Ports(hostports.UDP), first, count)
	}
	if err := bindable("tcp", 7001); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("binding held TCP port 7001: %v, want EADDRINUSE", err)
	}
	for _, p := range []Port{fixed, {hostports.UDP, 7002}, {hostports.TCP, first}} {
		if !firewallHas(t, s, p) {
			t.Errorf("%s not in the table's set", p)
		}
	}

	// Ports added while the share is live, concurrently.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range uint16(8) {
		for _, proto := range []hostports.Proto{hostports.TCP, hostports.UDP} {
			wg.Go(func() { errs <- s.Reserve(Port{proto, 7100 + i}) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Reserve: %v", err)
		}
	}
	for i := range uint16(8) {
		p := Port{hostports.UDP, 7100 + i}
		if !s.Has(p) || !firewallHas(t, s, p) {
			t.Errorf("%s after Reserve: held %v, in the table %v", p, s.Has(p), firewallHas(t, s, p))
		}
	}
	peer := n.peerUDP(t)
	send(t, peer, 7100)
	if got := nextUDPPort(t, s, 7100); got != 7100 {
		t.Fatalf("got port %d", got)
	}

	// A port the host holds is refused as the kernel's bind would.
	busy, err := net.Listen("tcp4", shareAddr4+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	held := Port{hostports.TCP, uint16(busy.Addr().(*net.TCPAddr).Port)}
	var se *Error
	if err := s.Reserve(held); !errors.As(err, &se) || se.Step != StepPort || se.Port != held || !hostports.IsInUse(err) {
		t.Errorf("reserving %s that the host uses: %v, want a StepPort error wrapping EADDRINUSE", held, err)
	}
	if s.Has(held) || firewallHas(t, s, held) {
		t.Errorf("%s that could not be reserved is held or in the table", held)
	}

	// Release, in the reverse order: the filter stops admitting the port
	// (a datagram sent to it before one to a held port does not reach the
	// socket), the table forgets it and the host may bind it.
	released := Port{hostports.UDP, 7100}
	if err := s.Release(released); err != nil {
		t.Fatal(err)
	}
	send(t, peer, 7100)
	send(t, peer, 7101)
	if got := nextUDPPort(t, s, 7100, 7101); got != 7101 {
		t.Errorf("after releasing udp port 7100 the packet socket still saw a datagram to it")
	}
	if s.Has(released) || firewallHas(t, s, released) {
		t.Errorf("%s after Release: held %v, in the table %v", released, s.Has(released), firewallHas(t, s, released))
	}
	if err := bindable("udp", 7100); err != nil {
		t.Errorf("binding released udp port 7100: %v", err)
	}
	if err := bindable("tcp", 7100); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("binding tcp port 7100, still held: %v, want EADDRINUSE", err)
	}
	if err := s.Release(released); err != nil {
		t.Errorf("releasing a port not held: %v", err)
	}
	if err := s.Release(Port{hostports.TCP, first}); err == nil || !s.Has(Port{hostports.TCP, first}) {
		t.Errorf("releasing ephemeral tcp port %d: %v, want an error and the port still held", first, err)
	}
	// Held again after the release.
	if err := s.Reserve(released); err != nil || !firewallHas(t, s, released) {
		t.Fatalf("reserving %s again: %v", released, err)
	}
	send(t, peer, 7100)
	if got := nextUDPPort(t, s, 7100); got != 7100 {
		t.Fatalf("got port %d", got)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := hostports.TableExists(hostports.StackTable()); err != nil || ok {
		t.Errorf("table %s after Close: %v, %v", hostports.StackTable(), ok, err)
	}
	for _, network := range []string{"tcp", "udp"} {
		for _, port := range []uint16{7001, 7100, first} {
			if err := bindable(network, port); err != nil {
				t.Errorf("%s port %d after Close: %v", network, port, err)
			}
		}
	}
	if err := s.Reserve(released); !errors.Is(err, ErrClosed) {
		t.Errorf("Reserve after Close: %v, want ErrClosed", err)
	}
}

// TestShareOpenFails: a step that fails undoes the steps before it, and
// the error says which step it was.
func TestShareOpenFails(t *testing.T) {
	n := setup(t)
	addrs := []netip.Addr{netip.MustParseAddr(shareAddr4)}
	table := hostports.PortdTable(1)
	busy, err := net.ListenPacket("udp4", shareAddr4+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inUse := Port{hostports.UDP, uint16(busy.LocalAddr().(*net.UDPAddr).Port)}

	for _, c := range []struct {
		name string
		cfg  Config
		step Step
	}{
		{"port in use", Config{Iface: n.dev, Addrs: addrs, Ports: []Port{{hostports.TCP, 7201}, inUse}, Table: table}, StepPort},
		{"ephemeral block too large", Config{Iface: n.dev, Addrs: addrs, Ephemeral: 70000, Ports: []Port{{hostports.TCP, 7201}}, Table: table}, StepEphemeral},
		// Nothing before the packet socket looks at the interface.
		{"no such interface", Config{Iface: "ustsh-none", Addrs: addrs, Ports: []Port{{hostports.TCP, 7201}}, Table: table}, StepFilter},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(c.cfg)
			var se *Error
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.As(err, &se) || se.Step != c.step {
				t.Fatalf("Open: %v (%#v), want step %d", err, se, c.step)
			}
			if c.step == StepPort && (se.Port != inUse || !hostports.IsInUse(err)) {
				t.Errorf("Open: %v for %s, want EADDRINUSE for %s", err, se.Port, inUse)
			}
			if ok, err := hostports.TableExists(table); err != nil || ok {
				t.Errorf("table %s after the failed Open: %v, %v", table, ok, err)
			}
			if err := bindable("tcp", 7201); err != nil {
				t.Errorf("tcp port 7201 after the failed Open: %v", err)
			}
		})
	}
}
