package vswitch_test

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/leakcheck"
	"github.com/ustack/ustack/vswitch"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

func newStack(t testing.TB, sw, label, addr string) *ustack.Stack {
	t.Helper()
	st, err := ustack.New(ustack.Config{
		Net:   ustack.Switch{Name: sw, Label: label},
		Addrs: []netip.Prefix{netip.MustParsePrefix(addr)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// udpEcho answers every datagram on port 7 of st with itself.
func udpEcho(t *testing.T, st *ustack.Stack) {
	t.Helper()
	pc, err := st.ListenPacket("udp4", ":7")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2000)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

func echo(t *testing.T, from *ustack.Stack, to string) {
	t.Helper()
	c, err := from.Dial("udp4", net.JoinHostPort(to, "7"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping " + to)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "ping "+to {
		t.Fatalf("echo from %s: %q, %v", to, buf[:n], err)
	}
}

func portLabelled(st *vswitch.Status, label string) vswitch.PortStatus {
	for _, p := range st.Ports {
		if p.Label == label {
			return p
		}
	}
	return vswitch.PortStatus{}
}

// TestStacks attaches three stacks to a switch: each reaches the others,
// a TCP transfer between two arrives whole, and the third port does not
// see it once the switch has learned where the two are.
func TestStacks(t *testing.T) {
	startSwitch(t, "lan", vswitch.Config{})
	stacks := map[string]*ustack.Stack{
		"10.9.0.1": newStack(t, "lan", "a", "10.9.0.1/24"),
		"10.9.0.2": newStack(t, "lan", "b", "10.9.0.2/24"),
		"10.9.0.3": newStack(t, "lan", "c", "10.9.0.3/24"),
	}
	for _, st := range stacks {
		if st.MTU() != vswitch.DefaultMTU || st.Attachment().String() != "switch:lan" {
			t.Errorf("stack MTU %d, attachment %s", st.MTU(), st.Attachment())
		}
		udpEcho(t, st)
	}
	for fromAddr, from := range stacks {
		for to := range stacks {
			if to != fromAddr {
				echo(t, from, to)
			}
		}
	}
	a, b := stacks["10.9.0.1"], stacks["10.9.0.2"]
	before := portLabelled(status(t, "lan"), "c")

	const size = 16 << 20
	ln, err := b.Listen("tcp4", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sums := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sums <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		sums <- [32]byte(h.Sum(nil))
	}()
	c, err := a.Dial("tcp4", "10.9.0.2:5001")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), h)
	if _, err := io.Copy(c, src); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := <-sums; got != [32]byte(h.Sum(nil)) {
		t.Fatal("the data arrived changed (SHA-256 differs)")
	}

	st := status(t, "lan")
	pa, pb, pc := portLabelled(st, "a"), portLabelled(st, "b"), portLabelled(st, "c")
	if pa.InBytes < size || pb.OutBytes < size {
		t.Errorf("a sent %d bytes in, b got %d out; want at least %d", pa.InBytes, pb.OutBytes, size)
	}
	if grew := pc.OutFrames - before.OutFrames; grew > 4 {
		t.Errorf("c was sent %d frames during a transfer between a and b (%d frames): learned unicast was flooded", grew, pa.InFrames)
	}
	for _, p := range []vswitch.PortStatus{pa, pb, pc} {
		if len(p.MACs) != 1 || p.InDropped != 0 || p.OutDropped != 0 {
			t.Errorf("port %s: %+v", p.Label, p)
		}
	}
	t.Logf("a: %d frames, %d bytes in; c: %d frames out during the transfer", pa.InFrames, pa.InBytes, pc.OutFrames-before.OutFrames)
}
