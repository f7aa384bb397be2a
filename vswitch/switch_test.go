package vswitch_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/vswitch"
)

// startSwitch runs a switch called name in a runtime directory of the
// test's own and stops it at the end of the test, checking that it left no
// file behind.
func startSwitch(t testing.TB, name string, cfg vswitch.Config) *vswitch.Switch {
	t.Helper()
	runtime := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	cfg.Logf = t.Logf
	sw, err := vswitch.Listen(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- sw.Serve() }()
	t.Cleanup(func() {
		if err := sw.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if left := filesIn(t, filepath.Join(runtime, "ustack", vswitch.Kind)); len(left) > 0 {
			t.Errorf("files left behind: %v", left)
		}
	})
	return sw
}

func filesIn(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// rawPort is a port driven by the test: it sends and reads frames itself.
type rawPort struct {
	t   *testing.T
	fd  int
	mac net.HardwareAddr
	num int
}

func attachRaw(t *testing.T, sw string, label string, mac string) *rawPort {
	t.Helper()
	p, err := vswitch.Attach(sw, label, 0)
	if err != nil {
		t.Fatal(err)
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	rp := &rawPort{t: t, fd: p.Fd, mac: hw, num: p.Number}
	t.Cleanup(rp.close)
	return rp
}

func (p *rawPort) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// frame builds a message: a zero virtio-net header and an Ethernet frame
// from the port to dst carrying payload.
func (p *rawPort) frame(dst string, payload []byte) []byte {
	d, err := net.ParseMAC(dst)
	if err != nil {
		p.t.Fatal(err)
	}
	b := make([]byte, 10, 10+14+len(payload))
	b = append(b, d...)
	b = append(b, p.mac...)
	b = binary.BigEndian.AppendUint16(b, 0x88b5) // local experimental EtherType
	return append(b, payload...)
}

func (p *rawPort) send(dst string, payload string) {
	p.t.Helper()
	if _, err := unix.Write(p.fd, p.frame(dst, []byte(payload))); err != nil {
		p.t.Fatalf("port %d: send: %v", p.num, err)
	}
}

// readable waits up to within for fd to become readable. A signal that
// interrupts the wait (the runtime's preemption signal, SIGURG, among
// them) does not end it.
func readable(fd int, within time.Duration) error {
	deadline := time.Now().Add(within)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		n, err := unix.Poll(pfd, int(left.Milliseconds()))
		switch {
		case err == unix.EINTR && left > 0:
			continue
		case err != nil:
			return err
		case n == 0:
			return fmt.Errorf("not readable within %v", within)
		}
		return nil
	}
}

// next returns the payload of the next frame that arrives, within 10 s.
func (p *rawPort) next() string {
	p.t.Helper()
	if err := readable(p.fd, 10*time.Second); err != nil {
		p.t.Fatalf("port %d: no frame within 10s (%v)", p.num, err)
	}
	buf := make([]byte, 70000)
	n, err := unix.Read(p.fd, buf)
	if err != nil || n < 24 {
		p.t.Fatalf("port %d: read %d bytes: %v", p.num, n, err)
	}
	return string(buf[24:n])
}

func status(t *testing.T, name string) *vswitch.Status {
	t.Helper()
	st, err := vswitch.GetStatus(name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func portOf(st *vswitch.Status, num int) *vswitch.PortStatus {
	for i := range st.Ports {
		if st.Ports[i].Port == num {
			return &st.Ports[i]
		}
	}
	return nil
}

// waitFor polls the switch's status until ok holds.
func waitFor(t *testing.T, name, what string, ok func(*vswitch.Status) bool) *vswitch.Status {
	t.Helper()
	var st *vswitch.Status
	testwait.For(t, what, func() bool {
		st = status(t, name)
		return ok(st)
	})
	return st
}

const (
	macA  = "02:00:00:00:00:0a"
	macB  = "02:00:00:00:00:0b"
	macC  = "02:00:00:00:00:0c"
	bcast = "ff:ff:ff:ff:ff:ff"
)

// TestLearning checks flooding and learning with ports the test drives:
// broadcast and unknown destinations reach every other port, a learned
// one only its own port, and a port that closes takes its addresses with
// it. A frame that must not reach a port is shown not to by the next
// frame the port gets: a marker sent after it.
func TestLearning(t *testing.T) {
	startSwitch(t, "lan", vswitch.Config{})
	a := attachRaw(t, "lan", "a", macA)
	b := attachRaw(t, "lan", "b", macB)
	c := attachRaw(t, "lan", "c", macC)

	a.send(bcast, "hello from a")
	for _, p := range []*rawPort{b, c} {
		if got := p.next(); got != "hello from a" {
			t.Fatalf("port %d got %q, want the broadcast", p.num, got)
		}
	}
	// a is learned: b's reply goes to a alone.
	b.send(macA, "b to a")
	if got := a.next(); got != "b to a" {
		t.Fatalf("a got %q", got)
	}
	a.send(macB, "a to b") // b was learned from its reply
	if got := b.next(); got != "a to b" {
		t.Fatalf("b got %q", got)
	}
	b.send(bcast, "marker 1")
	if got := c.next(); got != "marker 1" {
		t.Fatalf("c got %q before the marker: a unicast between a and b was flooded", got)
	}
	if got := a.next(); got != "marker 1" {
		t.Fatalf("a got %q", got)
	}
	// An unknown destination is flooded.
	a.send("02:00:00:00:00:ee", "to nobody")
	for _, p := range []*rawPort{b, c} {
		if got := p.next(); got != "to nobody" {
			t.Fatalf("port %d got %q, want the flooded frame", p.num, got)
		}
	}
	// A port's frames out are counted once written, which may be after
	// its reader has the frame: wait for the counts to catch up.
	st := waitFor(t, "lan", "the frames out counted", func(st *vswitch.Status) bool {
		pa, pc := portOf(st, a.num), portOf(st, c.num)
		return pa != nil && pc != nil && pa.OutFrames >= 2 && pc.OutFrames >= 3
	})
	if len(st.Ports) != 3 || st.Learned != 2 || st.Flooded != 3 {
		t.Errorf("status: %d ports, %d learned, %d flooded; want 3, 2, 3: %+v", len(st.Ports), st.Learned, st.Flooded, st)
	}
	pa, pc := portOf(st, a.num), portOf(st, c.num)
	if pa == nil || pa.Label != "a" || pa.PID != os.Getpid() || len(pa.MACs) != 1 || pa.MACs[0] != macA {
		t.Errorf("port a: %+v", pa)
	}
	if pa != nil && (pa.InFrames != 3 || pa.OutFrames != 2) {
		t.Errorf("port a: in %d out %d frames, want 3 and 2", pa.InFrames, pa.OutFrames)
	}
	if pc == nil || len(pc.MACs) != 0 || pc.InFrames != 0 || pc.OutFrames != 3 {
		t.Errorf("port c: %+v, want no address and 3 frames out", pc)
	}
	if pa != nil && pa.InBytes != uint64(3*14+len("hello from a")+len("a to b")+len("to nobody")) {
		t.Errorf("port a: %d bytes in", pa.InBytes)
	}

	// b goes: its port and address with it, so a frame to b is flooded.
	b.close()
	st = waitFor(t, "lan", "b's port freed", func(st *vswitch.Status) bool { return len(st.Ports) == 2 })
	if portOf(st, b.num) != nil || st.Learned != 1 {
		t.Errorf("after b left: %+v", st)
	}
	a.send(macB, "to b, gone")
	if got := c.next(); got != "to b, gone" {
		t.Fatalf("c got %q, want the frame to the forgotten b", got)
	}
}

// TestBadFrames: frames too short or too long for the switch are counted
// and dropped, and the port keeps working.
func TestBadFrames(t *testing.T) {
	startSwitch(t, "bad", vswitch.Config{})
	a := attachRaw(t, "bad", "a", macA)
	b := attachRaw(t, "bad", "b", macB)
	for _, msg := range [][]byte{
		make([]byte, 5),  // shorter than a virtio-net header
		make([]byte, 20), // no whole Ethernet header
		a.frame(bcast, make([]byte, 1501)),
	} {
		if _, err := unix.Write(a.fd, msg); err != nil {
			t.Fatal(err)
		}
	}
	a.send(bcast, "fine")
	if got := b.next(); got != "fine" {
		t.Fatalf("b got %q", got)
	}
	pa := portOf(status(t, "bad"), a.num)
	if pa == nil || pa.InDropped != 3 || pa.InFrames != 1 {
		t.Errorf("port a: %+v, want 3 dropped and 1 frame in", pa)
	}
	// A super-frame (GSO type set) may be larger than the MTU.
	big := a.frame(bcast, bytes.Repeat([]byte{'x'}, 60000))
	big[1] = unix.VIRTIO_NET_HDR_GSO_TCPV4
	if _, err := unix.Write(a.fd, big); err != nil {
		t.Fatal(err)
	}
	if got := b.next(); len(got) != 60000 {
		t.Fatalf("b got %d bytes, want the 60000-byte super-frame", len(got))
	}
}

// TestFullPort: a port whose process does not read never holds the others
// back: frames for it wait in its queue (here 16 frames) while its socket
// is full, and are then dropped and counted, while the other ports keep
// getting theirs. The sender sends each frame once b has the one before,
// so b's own queue never fills, however late b's reader is scheduled.
func TestFullPort(t *testing.T) {
	const queue = 16
	startSwitch(t, "full", vswitch.Config{MTU: 65535, QueueLen: queue})
	a := attachRaw(t, "full", "a", macA)
	b := attachRaw(t, "full", "b", macB)
	attachRaw(t, "full", "stuck", macC) // never read
	// A port is flooded to once the switch has taken it in, which may be
	// after its client connected: every frame below must reach all three.
	waitFor(t, "full", "the switch to serve three ports", func(st *vswitch.Status) bool { return len(st.Ports) == 3 })
	payload := bytes.Repeat([]byte{'y'}, 60000)
	// More than the stuck port's socket buffer (the kernel doubles what
	// is asked) and queue hold.
	n := 2*vswitch.SocketBuffer/len(payload) + queue + 16
	buf := make([]byte, 70000)
	for i := range n {
		if _, err := unix.Write(a.fd, a.frame(bcast, payload)); err != nil {
			t.Fatal(err)
		}
		if err := readable(b.fd, testwait.Ceiling); err != nil {
			t.Fatalf("b's frame %d of %d did not come: %v", i+1, n, err)
		}
		if m, err := unix.Read(b.fd, buf); err != nil || m != 24+len(payload) {
			t.Fatalf("b's frame %d of %d: %d bytes, %v", i+1, n, m, err)
		}
	}
	st := waitFor(t, "full", "the stuck port's drops counted", func(st *vswitch.Status) bool {
		for _, p := range st.Ports {
			if p.Label == "stuck" {
				return p.OutFrames+p.OutDropped+uint64(p.Queued) == uint64(n)
			}
		}
		return false
	})
	for _, p := range st.Ports {
		if p.Label == "stuck" && (p.OutDropped == 0 || p.OutFrames == 0 || p.Queued != queue) {
			t.Errorf("stuck port: %d frames out, %d dropped, %d queued; want some out, some dropped and a full queue of %d", p.OutFrames, p.OutDropped, p.Queued, queue)
		}
	}
}

// TestNames: a name is held while its switch runs; a socket left by a
// switch that died (here: a socket file nobody holds the name for) is
// replaced; a switch refuses a larger MTU than its own.
func TestNames(t *testing.T) {
	sw := startSwitch(t, "one", vswitch.Config{})
	if _, err := vswitch.Listen("one", vswitch.Config{}); err == nil || !strings.Contains(err.Error(), "a switch named one is already running") {
		t.Errorf("second switch of a name: %v", err)
	}
	if _, err := vswitch.Listen("bad/name", vswitch.Config{}); err == nil || !strings.Contains(err.Error(), "not a valid switch name") {
		t.Errorf("bad name: %v", err)
	}
	if _, err := vswitch.Listen("mtu", vswitch.Config{MTU: 100}); err == nil || !strings.Contains(err.Error(), "MTU 100 is out of range") {
		t.Errorf("MTU 100: %v", err)
	}
	var nr *vswitch.NotRunningError
	if _, err := vswitch.Attach("none", "", 0); !errors.As(err, &nr) || !strings.Contains(err.Error(), "start one with: ustack switch none") {
		t.Errorf("attach to no switch: %v", err)
	}
	var me *vswitch.MTUError
	if _, err := vswitch.Attach("one", "", 9000); !errors.As(err, &me) || me.Max != 1500 {
		t.Errorf("attach with MTU 9000: %v", err)
	}
	if p, err := vswitch.Attach("one", "", 1400); err != nil || p.MTU != 1400 {
		t.Errorf("attach with MTU 1400: %+v, %v", p, err)
	} else {
		unix.Close(p.Fd)
	}

	// A dead switch's socket: bound, then abandoned without its lock.
	stale := filepath.Join(filepath.Dir(sw.Path()), "dead.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: stale, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := vswitch.Attach("dead", "", 0); !errors.As(err, &nr) {
		t.Errorf("attach to a dead switch: %v", err)
	}
	again, err := vswitch.Listen("dead", vswitch.Config{})
	if err != nil {
		t.Fatalf("a switch in place of a dead one: %v", err)
	}
	go again.Serve()
	if p, err := vswitch.Attach("dead", "", 0); err != nil {
		t.Errorf("attach to the new switch: %v", err)
	} else {
		unix.Close(p.Fd)
	}
	if err := again.Close(); err != nil {
		t.Error(err)
	}
}

// TestGarbage: a connection that says something other than a hello is
// answered with an error and closed; one that says nothing does not hold
// up the others.
func TestGarbage(t *testing.T) {
	sw := startSwitch(t, "g", vswitch.Config{})
	silent, err := net.Dial("unixpacket", sw.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, err := net.Dial("unixpacket", sw.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1000)
	n, err := c.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "not a ustack switch hello") {
		t.Errorf("answer to garbage: %q, %v", buf[:n], err)
	}
	if n, err := c.Read(buf); n != 0 || err == nil {
		t.Errorf("after the answer: %d bytes, %v; want the connection closed", n, err)
	}
	if st := status(t, "g"); len(st.Ports) != 0 {
		t.Errorf("ports: %+v", st.Ports)
	}
}
