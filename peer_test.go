package ustack_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
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
	os.Exit(m.Run())
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
