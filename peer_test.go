package ustack_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/ustack/ustack/internal/leakcheck"
)

// The test binary doubles as a TCP peer for kernel-side measurements: run
// with USTACK_TEST_PEER="serve ADDR" it serves bulk transfers, with
// "client ADDR r|w BYTES" it makes one and prints the seconds it took.
func TestMain(m *testing.M) {
	if mode := os.Getenv("USTACK_TEST_PEER"); mode != "" {
		if err := runPeer(mode); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(leakcheck.Main(m))
}

func runPeer(mode string) error {
	var cmd, addr, dir string
	var n int64
	fmt.Sscan(mode, &cmd, &addr, &dir, &n)
	switch cmd {
	case "serve":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			go serveBulk(c)
		}
	case "client":
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := bulk(c, dir, n); err != nil {
			return err
		}
		fmt.Println(time.Since(start).Seconds())
		return nil
	case "rawsend":
		// Stream n bytes of the seeded test stream to addr, then close.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		if _, err := io.Copy(c, stream(3, n)); err != nil {
			return err
		}
		return c.Close()
	case "inject":
		// inject DEV DST: bad frames out of DEV to the IPv4 address DST,
		// from DST's .1.
		dst, err := netip.ParseAddr(dir)
		if err != nil {
			return err
		}
		return injectBadFrames(addr, dst)
	case "sinkhash":
		// Take one connection on addr and print the SHA-256 of all it sends.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		h := newHashingWriter()
		if _, err := io.Copy(h, c); err != nil {
			return err
		}
		c.Close()
		fmt.Printf("%x %d\n", h.Sum(), h.n)
		return nil
	case "echo":
		// Echo every connection's bytes back, for round-trip measurements.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	case "hoststack":
		// A stack on --net host:addr listening on TCP port dir, until killed.
		return runHostStack(addr, dir)
	}
	return fmt.Errorf("unknown peer mode %q", mode)
}

// bulk asks the peer on c for a transfer: "r" = the peer reads n bytes we
// write, "w" = the peer writes n bytes we read. It returns when the peer
// has seen or sent everything.
func bulk(c net.Conn, dir string, n int64) error {
	defer c.Close()
	var req [9]byte
	req[0] = dir[0]
	binary.BigEndian.PutUint64(req[1:], uint64(n))
	if _, err := c.Write(req[:]); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	if dir == "r" {
		for left := n; left > 0; {
			k, err := c.Write(buf[:min(int64(len(buf)), left)])
			if err != nil {
				return err
			}
			left -= int64(k)
		}
		_, err := c.Read(buf[:1]) // the peer's one-byte receipt
		return err
	}
	got, err := io.CopyBuffer(io.Discard, io.LimitReader(c, n), buf)
	if err == nil && got != n {
		err = fmt.Errorf("got %d of %d bytes", got, n)
	}
	return err
}

func serveBulk(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var req [9]byte
	if _, err := io.ReadFull(r, req[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(req[1:]))
	buf := make([]byte, 256<<10)
	if req[0] == 'r' {
		if got, _ := io.CopyBuffer(io.Discard, io.LimitReader(r, n), buf); got == n {
			c.Write([]byte{1})
		}
		return
	}
	for left := n; left > 0; {
		k, err := c.Write(buf[:min(int64(len(buf)), left)])
		if err != nil {
			return
		}
		left -= int64(k)
	}
}

// injectBadFrames sends malformed frames for 10.77.0.2 out of device dev
// through a raw packet socket: a truncated IPv4 header, a TCP segment with
// a bad checksum, an IPv4 header claiming more than the frame holds, and
// overlapping garbage fragments. Broadcast destination, so whatever MAC the
// stack has, its Ethernet layer takes them.
func injectBadFrames(dev string, dst netip.Addr) error {
	src := dst.As4()
	src[3] = 1
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	eth := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ifi.HardwareAddr...)
	eth = append(eth, 0x08, 0x00)
	ipHdr := func(total, fragOff int, more bool, proto byte) []byte {
		h := make([]byte, 20)
		h[0], h[8], h[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(h[2:], uint16(total))
		binary.BigEndian.PutUint16(h[4:], 0x4242)
		ff := uint16(fragOff / 8)
		if more {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:], ff)
		copy(h[12:], src[:])
		copy(h[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(h[10:], ^checksum.Checksum(h, 0))
		return h
	}
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], 5555)
	binary.BigEndian.PutUint16(tcp[2:], 8080)
	tcp[12], tcp[13] = 0x50, 0x02                // SYN
	binary.BigEndian.PutUint16(tcp[16:], 0xdead) // wrong checksum
	garbage := make([]byte, 64)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	frames := [][]byte{
		append(append([]byte{}, eth...), ipHdr(40, 0, false, 6)[:10]...),                 // truncated
		append(append(append([]byte{}, eth...), ipHdr(40, 0, false, 6)...), tcp...),      // bad TCP checksum
		append(append(append([]byte{}, eth...), ipHdr(1400, 0, false, 6)...), tcp...),    // length beyond the frame
		append(append(append([]byte{}, eth...), ipHdr(84, 0, true, 17)...), garbage...),  // fragment 1
		append(append(append([]byte{}, eth...), ipHdr(84, 8, false, 17)...), garbage...), // overlapping fragment
	}
	for round := 0; round < 20; round++ {
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return err
			}
		}
	}
	return nil
}
