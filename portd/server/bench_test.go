package server_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ustack/ustack"
)

const benchBytes = 64 << 20

// BenchmarkPortd measures one TCP stream each way and a 1-byte round trip
// between a stack on --net host and the kernel in a namespace, once with
// the stack's own packet socket (root host mode) and once through portd
// (in this process, as a root client would; the frames cross portd's
// frame socket and its checks). Compare with BenchmarkHost in the root
// package for the kernel on the same veth path.
func BenchmarkPortd(b *testing.B) {
	n := setup(b)
	n.startServer(b)
	n.start(b, 0, true, "bulk", remoteAddr4+":9000").expect(b, "ready")
	for _, mode := range []struct {
		name  string
		portd string
	}{{"root", ""}, {"portd", n.sock()}} {
		s, err := ustack.New(ustack.Config{Net: ustack.Host{Iface: n.dev, Portd: mode.portd}})
		if err != nil {
			b.Fatal(err)
		}
		for _, dir := range []string{"r", "w"} {
			name := map[string]string{"r": "to-namespace", "w": "from-namespace"}[dir]
			b.Run(mode.name+"/"+name, func(b *testing.B) {
				b.SetBytes(benchBytes)
				for b.Loop() {
					c, err := s.Dial("tcp", remoteAddr4+":9000")
					if err != nil {
						b.Fatal(err)
					}
					if err := bulk(c, dir, benchBytes); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(benchBytes)*8/1e9/(b.Elapsed().Seconds()/float64(b.N)), "Gbit/s")
			})
		}
		b.Run(mode.name+"/rr-1byte", func(b *testing.B) {
			c, err := s.Dial("tcp", remoteAddr4+":9000")
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var req [9]byte
			req[0] = 'e'
			c.Write(req[:])
			buf := []byte{1}
			var rtts []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				rtts = append(rtts, time.Since(t0))
			}
			slices.Sort(rtts)
			b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
		s.Close()
	}
}

// bulk asks the peer on c for a transfer: "r" = the peer reads n bytes we
// write, "w" = the peer writes n bytes we read.
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
		_, err := io.ReadFull(c, buf[:1]) // the peer's receipt
		return err
	}
	got, err := io.CopyBuffer(io.Discard, io.LimitReader(c, n), buf)
	if err == nil && got != n {
		err = fmt.Errorf("got %d of %d bytes", got, n)
	}
	return err
}

// serveBulk is the peer's side of bulk; "e" echoes until closed.
func serveBulk(c net.Conn) {
	defer c.Close()
	var req [9]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(req[1:]))
	buf := make([]byte, 256<<10)
	switch req[0] {
	case 'r':
		if got, _ := io.CopyBuffer(io.Discard, io.LimitReader(c, n), buf); got == n {
			c.Write([]byte{1})
		}
	case 'w':
		for left := n; left > 0; {
			k, err := c.Write(buf[:min(int64(len(buf)), left)])
			if err != nil {
				return
			}
			left -= int64(k)
		}
	case 'e':
		io.Copy(c, c)
	}
}
