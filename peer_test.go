package ustack_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/ustack/ustack/internal/leakcheck"
	"github.com/ustack/ustack/internal/testpeer"
)

// The test binary doubles as the kernel-side peer of the tests that
// reach the kernel's own stack (run in a namespace with testpeer): "serve
// ADDR" serves bulk transfers, "client ADDR r|w BYTES" makes one and
// prints the seconds it took, and the modes below.
func TestMain(m *testing.M) {
	testpeer.Dispatch(map[string]testpeer.Mode{
		"serve":  func(a []string) error { return listenAndServe(a[0], serveBulk) },
		"client": func(a []string) error { return bulkClient(a[0], a[1], a[2]) },
		// rawsend ADDR BYTES: stream BYTES of the seeded test stream to
		// ADDR, then close.
		"rawsend": func(a []string) error { return rawSend(a[0], a[1]) },
		// inject DEV DST: bad frames out of DEV to the IPv4 address DST,
		// from DST's .1.
		"inject": func(a []string) error {
			dst, err := netip.ParseAddr(a[1])
			if err != nil {
				return err
			}
			return injectBadFrames(a[0], dst)
		},
		// sinkhash ADDR: take one connection on ADDR and print the SHA-256
		// of all it sends.
		"sinkhash": func(a []string) error { return sinkHash(a[0]) },
		// echo ADDR: echo every connection's bytes back, for round-trip
		// measurements.
		"echo": func(a []string) error {
			return listenAndServe(a[0], func(c net.Conn) { io.Copy(c, c); c.Close() })
		},
		// hoststack IFACE PORT: a stack on --net host:IFACE listening on
		// TCP port PORT, until killed.
		"hoststack": func(a []string) error { return runHostStack(a[0], a[1]) },
	})
	os.Exit(leakcheck.Main(m))
}

// listenAndServe says ready once it listens on addr, then serves each
// connection on a goroutine of its own.
func listenAndServe(addr string, serve func(net.Conn)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	testpeer.Ready()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serve(c)
	}
}

func bulkClient(addr, dir, bytes string) error {
	n, err := strconv.ParseInt(bytes, 10, 64)
	if err != nil {
		return err
	}
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
}

func rawSend(addr, bytes string) error {
	n, err := strconv.ParseInt(bytes, 10, 64)
	if err != nil {
		return err
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	if _, err := io.Copy(c, stream(3, n)); err != nil {
		return err
	}
	return c.Close()
}

func sinkHash(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	testpeer.Ready()
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
