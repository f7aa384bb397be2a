package vxlan

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/testwait"
)

func TestHeader(t *testing.T) {
	for _, vni := range []uint32{1, 42, 0x123456, MaxVNI} {
		h := make([]byte, HeaderLen)
		Encode(h, vni)
		// RFC 7348 §5: flags (I set), 24 reserved bits, VNI, 8 reserved bits.
		want := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
		if !bytes.Equal(h, want) {
			t.Errorf("Encode(%#x) = % x, want % x", vni, h, want)
		}
		got, frame, err := Decode(append(h, 0xaa, 0xbb))
		if err != nil || got != vni || !bytes.Equal(frame, []byte{0xaa, 0xbb}) {
			t.Errorf("Decode of vni %#x: %#x % x %v", vni, got, frame, err)
		}
	}
	// Reserved bits set by a sender are ignored, as the RFC asks.
	if vni, _, err := Decode([]byte{0xff, 1, 2, 3, 0, 0, 7, 9}); err != nil || vni != 7 {
		t.Errorf("reserved bits: vni %d, %v", vni, err)
	}
	for _, bad := range [][]byte{nil, {0x08, 0, 0}, {0, 0, 0, 0, 0, 0, 1, 0}} {
		if _, _, err := Decode(bad); err != ErrHeader {
			t.Errorf("Decode(% x) = %v, want ErrHeader", bad, err)
		}
	}
}

// framePair is a SOCK_SEQPACKET pair: the tunnel's end and the test's.
func framePair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "frames")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// Two VTEPs on loopback relay frames both ways; datagrams that are not
// VXLAN, for a VNI without a tunnel or from the wrong address are counted
// and dropped.
func TestRelay(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a, err := Listen(netip.AddrPortFrom(lo, 0), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Listen(netip.AddrPortFrom(lo, 0), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	aTunnel, aNode := framePair(t)
	defer aNode.Close()
	bTunnel, bNode := framePair(t)
	defer bNode.Close()
	ta, err := a.Add(7, b.Addr(), aTunnel)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Add(7, a.Addr(), bTunnel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Add(7, b.Addr(), aTunnel); err == nil {
		t.Errorf("a second tunnel for VNI 7 on one VTEP was taken")
	}
	frame := bytes.Repeat([]byte{0x5a}, 1514)
	buf := make([]byte, 1<<16)
	for _, c := range []struct {
		from, to *net.UnixConn
	}{{aNode, bNode}, {bNode, aNode}} {
		if _, err := c.from.Write(frame); err != nil {
			t.Fatal(err)
		}
		n, err := c.to.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], frame) {
			t.Fatalf("relayed %d bytes (%v), want the 1514-byte frame", n, err)
		}
	}
	// A relay counts a frame after sending it, so the counters may trail
	// the frame's arrival by a moment.
	testwait.For(t, "each tunnel to count its frame", func() bool {
		return ta.TxFrames.Load() == 1 && ta.RxFrames.Load() == 1 && tb.TxBytes.Load() == 1514
	})

	send := func(from netip.Addr, p []byte) {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(b.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	vx := func(vni uint32) []byte {
		p := make([]byte, HeaderLen+60)
		Encode(p, vni)
		return p
	}
	send(lo, []byte("not vxlan"))
	send(lo, vx(8))
	send(netip.MustParseAddr("127.0.0.2"), vx(7))
	testwait.For(t, "the three datagrams to be counted", func() bool {
		return b.BadHeader.Load() == 1 && b.UnknownVNI.Load() == 1 && tb.WrongSource.Load() == 1
	})
	if tb.RxFrames.Load() != 1 {
		t.Errorf("b delivered %d frames, want only the relayed one", tb.RxFrames.Load())
	}
}
