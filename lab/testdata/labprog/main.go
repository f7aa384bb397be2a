// Command labprog is a test program run on lab nodes by ustack lab exec:
// a static Go program whose sockets are the node's.
//
//	labprog serve ADDR SIZE   accept one connection, send SIZE bytes of the test stream, close; print "listening A" first
//	labprog fetch ADDR        connect, read everything; print "bytes N sha256 H"
//	labprog echo ADDR         a UDP echo server; print "listening A" first, then serve until killed
//	labprog rtt ADDR N        N UDP round trips of 64 bytes to an echo server; print "rtt min/avg/max US/US/US us"
//	labprog sleep             print "sleeping", then wait until killed
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: labprog serve|fetch|echo|rtt|sleep ..."))
	}
	switch os.Args[1] {
	case "serve":
		size, _ := strconv.ParseInt(os.Args[3], 10, 64)
		serve(os.Args[2], size)
	case "fetch":
		fetch(os.Args[2])
	case "echo":
		echo(os.Args[2])
	case "rtt":
		n, _ := strconv.Atoi(os.Args[3])
		rtt(os.Args[2], n)
	case "sleep":
		fmt.Println("sleeping")
		select {}
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}

// Stream is the test stream: n bytes of ChaCha8 with a fixed seed (the
// tests compute the same).
func Stream(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{'l', 'a', 'b'}), n)
}

func serve(addr string, size int64) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err)
	}
	fmt.Println("listening", ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		fail(err)
	}
	if _, err := io.Copy(c, Stream(size)); err != nil {
		fail(err)
	}
	c.Close()
}

func fetch(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fail(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		fail(err)
	}
	fmt.Printf("bytes %d sha256 %x\n", n, h.Sum(nil))
}

func echo(addr string) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		fail(err)
	}
	fmt.Println("listening", pc.LocalAddr())
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			fail(err)
		}
		pc.WriteTo(buf[:n], from)
	}
}

func rtt(addr string, n int) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fail(err)
	}
	msg := make([]byte, 64)
	buf := make([]byte, 128)
	var min, max, sum time.Duration
	for i := 0; i < n; i++ {
		msg[0] = byte(i)
		start := time.Now()
		c.SetReadDeadline(start.Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			fail(err)
		}
		for {
			m, err := c.Read(buf)
			if err != nil {
				fail(err)
			}
			if m == len(msg) && buf[0] == byte(i) {
				break
			}
		}
		d := time.Since(start)
		if i == 0 || d < min {
			min = d
		}
		if d > max {
			max = d
		}
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	fmt.Printf("rtt min/avg/max %.1f/%.1f/%.1f us\n", us(min), us(sum/time.Duration(n)), us(max))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "labprog:", err)
	os.Exit(1)
}
