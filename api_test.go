package ustack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testwait"
)

// echoOnce reads one message from c and writes it back.
func echoOnce(c net.Conn) error {
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	_, err = c.Write(buf[:n])
	return err
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("got %q back, want %q", buf, msg)
	}
}

func addrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.IPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func TestDialAccept(t *testing.T) {
	a, b := newPair(t, ustack.Config{}, ustack.Config{})
	for _, tc := range []struct {
		name, listenNet, listenAddr, dialNet, dialHost, wantRemote string
	}{
		{"tcp4", "tcp4", addrB4 + ":0", "tcp4", addrB4, addrA4},
		{"tcp6", "tcp6", "[" + addrB6 + "]:0", "tcp6", addrB6, addrA6},
		{"tcp-to-v4", "tcp", addrB4 + ":0", "tcp", addrB4, addrA4},
		{"tcp-to-v6", "tcp", "[" + addrB6 + "]:0", "tcp", addrB6, addrA6},
		{"dual/v4", "tcp", ":0", "tcp4", addrB4, addrA4},
		{"dual/v6", "tcp", ":0", "tcp6", addrB6, addrA6},
		{"dual-unspecified/v4", "tcp", "0.0.0.0:0", "tcp", addrB4, addrA4},
		{"any4", "tcp4", ":0", "tcp4", addrB4, addrA4},
		{"any6", "tcp6", ":0", "tcp6", addrB6, addrA6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := b.Listen(tc.listenNet, tc.listenAddr)
			if err != nil {
				t.Fatalf("Listen(%q, %q): %v", tc.listenNet, tc.listenAddr, err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			if port == 0 {
				t.Fatalf("listener address %v has no port", ln.Addr())
			}
			ch := acceptOne(t, ln)
			c, err := a.Dial(tc.dialNet, net.JoinHostPort(tc.dialHost, itoa(port)))
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			s, ok := <-ch
			if !ok {
				t.FailNow()
			}
			defer s.Close()
			if got := addrIP(s.RemoteAddr()); got.String() != tc.wantRemote {
				t.Errorf("accepted conn's RemoteAddr = %v, want %s", s.RemoteAddr(), tc.wantRemote)
			}
			if got := addrIP(c.RemoteAddr()); got.String() != tc.dialHost {
				t.Errorf("dialled conn's RemoteAddr = %v, want %s", c.RemoteAddr(), tc.dialHost)
			}
			if got := addrIP(c.LocalAddr()); got.String() != tc.wantRemote {
				t.Errorf("dialled conn's LocalAddr = %v, want %s", c.LocalAddr(), tc.wantRemote)
			}
			go echoOnce(s)
			roundTrip(t, c, "hello "+tc.name)
		})
	}
}

func itoa(n int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(n)).String()[len("0.0.0.0:"):]
}

func TestDialRefused(t *testing.T) {
	a, _ := newPair(t, ustack.Config{}, ustack.Config{})
	for _, tc := range []struct{ network, addr string }{
		{"tcp", addrB4 + ":9"},
		{"tcp4", addrB4 + ":9"},
		{"tcp6", "[" + addrB6 + "]:9"},
	} {
		t.Run(tc.network+"/"+tc.addr, func(t *testing.T) {
			c, err := a.Dial(tc.network, tc.addr)
			if err == nil {
				c.Close()
				t.Fatal("Dial to a closed port succeeded")
			}
			var op *net.OpError
			if !errors.As(err, &op) {
				t.Fatalf("error %v (%T) is not a *net.OpError", err, err)
			}
			if op.Op != "dial" {
				t.Errorf("OpError.Op = %q, want dial", op.Op)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("errors.Is(%v, ECONNREFUSED) = false", err)
			}
		})
	}
}

func TestDialContextDeadline(t *testing.T) {
	a, _ := newPair(t, ustack.Config{}, ustack.Config{})
	// Nobody owns these addresses on the pair's subnets: ARP and neighbour
	// discovery go unanswered, so the SYN never leaves and only the deadline
	// can end the attempt.
	for _, addr := range []string{"10.0.9.77:80", "[fd09::77]:80"} {
		t.Run(addr, func(t *testing.T) {
			const limit = 300 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), limit)
			defer cancel()
			start := time.Now()
			c, err := a.DialContext(ctx, "tcp", addr)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("Dial to an unowned address succeeded")
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("error %v (%T) is not a net.Error with Timeout() true", err, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("errors.Is(%v, context.DeadlineExceeded) = %v, errors.Is(err, os.ErrDeadlineExceeded) = %v; want both",
					err, errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded))
			}
			if oe := (*net.OpError)(nil); !errors.As(err, &oe) || oe.Op != "dial" {
				t.Errorf("error %v (%T) is not a dial *net.OpError", err, err)
			}
			if took < limit-10*time.Millisecond || took > limit+2*time.Second {
				t.Errorf("Dial returned after %v, want about %v", took, limit)
			}
		})
	}
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		// Cancel once the connection is being made (its SYN waits for
		// ARP, which nobody answers).
		go func() {
			testwait.Until(ctx, "a connection in SYN-SENT", func() error {
				for _, ep := range a.Netstack().RegisteredEndpoints() {
					if te, ok := ep.(*tcp.Endpoint); ok && tcp.EndpointState(te.State()) == tcp.StateSynSent {
						return nil
					}
				}
				return errors.New("none")
			})
			cancel()
		}()
		_, err := a.DialContext(ctx, "tcp", "10.0.9.77:80")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("DialContext after cancel: %v, want context.Canceled", err)
		}
	})
}

func TestConnDeadlines(t *testing.T) {
	a, b := newPair(t, ustack.Config{}, ustack.Config{})
	c, s := connect(t, a, b, "tcp", addrB4)

	t.Run("read", func(t *testing.T) {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		start := time.Now()
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline: %v, want a timeout net.Error", err)
		}
		if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
			t.Errorf("Read timed out after %v, want about 100ms", d)
		}
		// Clearing the deadline makes the conn usable again.
		c.SetReadDeadline(time.Time{})
		go s.Write([]byte("x"))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'x' {
			t.Fatalf("Read after clearing the deadline: %q, %v", buf, err)
		}
	})
	t.Run("write", func(t *testing.T) {
		// The peer does not read: send and receive buffers fill and Write
		// blocks until the deadline.
		c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		chunk := make([]byte, 64<<10)
		var err error
		var total int
		for total < 256<<20 && err == nil {
			var n int
			n, err = c.Write(chunk)
			total += n
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Write to a peer that does not read: %v after %d bytes, want a timeout net.Error", err, total)
		}
		c.SetWriteDeadline(time.Time{})
		// Drain what was written, then the conn still carries data.
		go func() {
			io.CopyN(io.Discard, s, int64(total))
			echoOnce(s)
		}()
		roundTrip(t, c, "still alive")
	})
}

func TestListenerCloseUnblocksAccept(t *testing.T) {
	_, b := newPair(t, ustack.Config{}, ustack.Config{})
	ln, err := b.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	testwait.For(t, "Accept to block", func() bool { return ustack.BlockedReading(ln) })
	if err := ln.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept returned no error after Close")
		}
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want an error wrapping net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still blocked 2s after Close")
	}
	// And a later Accept fails at once.
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
}

func TestHalfClose(t *testing.T) {
	a, b := newPair(t, ustack.Config{}, ustack.Config{})
	for _, fam := range []struct{ network, addr string }{{"tcp4", addrB4}, {"tcp6", addrB6}} {
		t.Run(fam.network, func(t *testing.T) {
			c, s := connect(t, a, b, fam.network, fam.addr)
			cw, ok := c.(closeWriter)
			if !ok {
				t.Fatalf("%T has no CloseWrite", c)
			}
			if _, err := c.Write([]byte("request")); err != nil {
				t.Fatal(err)
			}
			if err := cw.CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			got, err := io.ReadAll(s) // ends only at the peer's FIN
			if err != nil || string(got) != "request" {
				t.Fatalf("server read %q, %v; want \"request\" then EOF", got, err)
			}
			// The other direction still works after the half-close.
			reply := bytes.Repeat([]byte("reply "), 10000)
			go func() {
				s.Write(reply)
				s.Close()
			}()
			back, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(back, reply) {
				t.Fatalf("client read %d bytes, %v; want %d bytes then EOF", len(back), err, len(reply))
			}
			if _, err := c.Write([]byte("more")); err == nil {
				t.Error("Write after CloseWrite succeeded")
			}
		})
	}
}

func TestUDP(t *testing.T) {
	a, b := newPair(t, ustack.Config{}, ustack.Config{})
	for _, tc := range []struct {
		name, network, listen, to string
		max                       int // largest datagram of the family
	}{
		{"udp4", "udp4", addrB4 + ":0", addrB4, 65507},
		{"udp6", "udp6", "[" + addrB6 + "]:0", addrB6, 65527},
		{"dual/v4", "udp", ":0", addrB4, 65507},
		{"dual/v6", "udp", ":0", addrB6, 65527},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := b.ListenPacket(tc.network, tc.listen)
			if err != nil {
				t.Fatalf("ListenPacket: %v", err)
			}
			defer srv.Close()
			cliNet := "udp4"
			if netip.MustParseAddr(tc.to).Is6() {
				cliNet = "udp6"
			}
			cli, err := a.ListenPacket(cliNet, ":0")
			if err != nil {
				t.Fatalf("ListenPacket: %v", err)
			}
			defer cli.Close()
			port := srv.LocalAddr().(*net.UDPAddr).Port
			dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.to), uint16(port)))
			for _, size := range []int{1, 1472, 1473, tc.max} {
				msg := make([]byte, size)
				stream(uint64(size), int64(size)).Read(msg)
				srv.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := cli.WriteTo(msg, dst); err != nil || n != size {
					t.Fatalf("WriteTo %d bytes: %d, %v", size, n, err)
				}
				buf := make([]byte, 70000)
				n, from, err := srv.ReadFrom(buf)
				if err != nil {
					t.Fatalf("ReadFrom (%d-byte datagram): %v", size, err)
				}
				if n != size || !bytes.Equal(buf[:n], msg) {
					t.Fatalf("received %d bytes, want the %d-byte datagram whole", n, size)
				}
				if addrIP(from) != addrIP(cli.LocalAddr()) && addrIP(from).String() != map[bool]string{true: addrA4, false: addrA6}[cliNet == "udp4"] {
					t.Errorf("datagram from %v, want from %s", from, cli.LocalAddr())
				}
				// Reply to the address ReadFrom reported.
				if _, err := srv.WriteTo(msg, from); err != nil {
					t.Fatalf("reply WriteTo %v: %v", from, err)
				}
				cli.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err = cli.ReadFrom(buf)
				if err != nil || n != size || !bytes.Equal(buf[:n], msg) {
					t.Fatalf("reply: %d bytes, %v; want the %d-byte datagram whole", n, err, size)
				}
			}
		})
	}
	t.Run("too-big", func(t *testing.T) {
		cli, err := a.ListenPacket("udp4", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		_, err = cli.WriteTo(make([]byte, 65508), &net.UDPAddr{IP: net.ParseIP(addrB4), Port: 9})
		if !errors.Is(err, syscall.EMSGSIZE) {
			t.Errorf("WriteTo of 65508 bytes over IPv4: %v, want EMSGSIZE", err)
		}
	})
	t.Run("read-deadline", func(t *testing.T) {
		pc, err := a.ListenPacket("udp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _, err = pc.ReadFrom(make([]byte, 10))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("ReadFrom past the deadline: %v, want a timeout net.Error", err)
		}
		// With the deadline cleared, ReadFrom blocks until a datagram comes.
		pc.SetReadDeadline(time.Time{})
		read := make(chan error, 1)
		go func() {
			n, _, err := pc.ReadFrom(make([]byte, 10))
			if err == nil && n != 4 {
				err = fmt.Errorf("%d bytes, want 4", n)
			}
			read <- err
		}()
		testwait.For(t, "ReadFrom to block", func() bool { return ustack.BlockedReading(pc) })
		pc.WriteTo([]byte("self"), &net.UDPAddr{IP: net.ParseIP(addrA4), Port: pc.LocalAddr().(*net.UDPAddr).Port})
		select {
		case err := <-read:
			if err != nil {
				t.Fatalf("ReadFrom after clearing the deadline: %v", err)
			}
		case <-time.After(5 * time.Second):
			pc.Close()
			t.Fatal("ReadFrom after clearing the deadline still blocked 5s after a datagram was sent")
		}
	})
	t.Run("close-unblocks-read", func(t *testing.T) {
		pc, err := a.ListenPacket("udp4", ":0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := pc.ReadFrom(make([]byte, 10))
			done <- err
		}()
		testwait.For(t, "ReadFrom to block", func() bool { return ustack.BlockedReading(pc) })
		pc.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadFrom after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("ReadFrom still blocked 2s after Close")
		}
	})
}

func TestConnectedUDP(t *testing.T) {
	a, b := newPair(t, ustack.Config{}, ustack.Config{})
	for _, tc := range []struct{ network, host string }{{"udp", addrB4}, {"udp4", addrB4}, {"udp", addrB6}, {"udp6", addrB6}} {
		t.Run(tc.network+"/"+tc.host, func(t *testing.T) {
			srv, err := b.ListenPacket("udp", ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			port := srv.LocalAddr().(*net.UDPAddr).Port
			c, err := a.Dial(tc.network, net.JoinHostPort(tc.host, itoa(port)))
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if got := addrIP(c.RemoteAddr()); got.String() != tc.host || c.RemoteAddr().(*net.UDPAddr).Port != port {
				t.Errorf("RemoteAddr = %v, want %s port %d", c.RemoteAddr(), tc.host, port)
			}
			go func() {
				buf := make([]byte, 100)
				n, from, err := srv.ReadFrom(buf)
				if err == nil {
					srv.WriteTo(buf[:n], from)
				}
			}()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			roundTrip(t, c, "ping over connected udp")
		})
	}
}

func TestICMPEcho(t *testing.T) {
	a, _ := newPair(t, ustack.Config{}, ustack.Config{})
	for _, tc := range []struct{ network, to string }{{"icmp", addrB4}, {"icmp6", addrB6}} {
		t.Run(tc.network, func(t *testing.T) {
			testPing(t, a, tc.network, tc.to)
		})
	}
}

func TestListenErrors(t *testing.T) {
	a, _ := newPair(t, ustack.Config{}, ustack.Config{})
	t.Run("address-not-owned", func(t *testing.T) {
		for _, tc := range []struct{ network, addr string }{
			{"tcp", "10.0.9.77:80"}, {"tcp6", "[fd09::77]:80"}, {"udp", "10.0.9.77:53"}, {"udp6", "[fd09::77]:53"},
		} {
			var err error
			if tc.network[:3] == "tcp" {
				var ln net.Listener
				if ln, err = a.Listen(tc.network, tc.addr); err == nil {
					ln.Close()
				}
			} else {
				var pc net.PacketConn
				if pc, err = a.ListenPacket(tc.network, tc.addr); err == nil {
					pc.Close()
				}
			}
			if err == nil {
				t.Errorf("listening on %s %s (not the stack's) succeeded", tc.network, tc.addr)
			} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
				t.Errorf("listening on %s %s: %v, want EADDRNOTAVAIL", tc.network, tc.addr, err)
			}
		}
	})
	t.Run("port-in-use", func(t *testing.T) {
		ln, err := a.Listen("tcp4", addrA4+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ln2, err := a.Listen("tcp4", ln.Addr().String())
		if err == nil {
			ln2.Close()
			t.Fatal("a second listener on the same port succeeded")
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("second Listen: %v, want EADDRINUSE", err)
		}
	})
	t.Run("family-mismatch", func(t *testing.T) {
		if ln, err := a.Listen("tcp4", "["+addrA6+"]:0"); err == nil {
			ln.Close()
			t.Error("Listen(tcp4) on an IPv6 address succeeded")
		}
	})
	t.Run("unknown-network", func(t *testing.T) {
		calls := map[string]func() error{
			"Dial(tcpx)":        func() error { _, err := a.Dial("tcpx", addrB4+":1"); return err },
			"Dial(ip)":          func() error { _, err := a.Dial("ip", addrB4); return err },
			"Listen(udp)":       func() error { _, err := a.Listen("udp", ":0"); return err },
			"Listen(unix)":      func() error { _, err := a.Listen("unix", "/tmp/x"); return err },
			"ListenPacket(tcp)": func() error { _, err := a.ListenPacket("tcp", ":0"); return err },
			"ListenPacket()":    func() error { _, err := a.ListenPacket("", ":0"); return err },
		}
		for name, call := range calls {
			err := call()
			var op *net.OpError
			var unk net.UnknownNetworkError
			if !errors.As(err, &op) || !errors.As(err, &unk) {
				t.Errorf("%s: %v (%T), want *net.OpError with net.UnknownNetworkError", name, err, err)
			}
		}
	})
	t.Run("bad-address", func(t *testing.T) {
		for _, addr := range []string{"nocolon", "10.0.9.1:99999", "10.0.9.1:-1"} {
			if ln, err := a.Listen("tcp", addr); err == nil {
				ln.Close()
				t.Errorf("Listen(tcp, %q) succeeded", addr)
			}
			if _, err := a.Dial("tcp", addr); err == nil {
				t.Errorf("Dial(tcp, %q) succeeded", addr)
			}
		}
	})
}

func TestWriteToBadAddr(t *testing.T) {
	a, _ := newPair(t, ustack.Config{}, ustack.Config{})
	for _, network := range []string{"udp", "udp4", "icmp", "icmp6"} {
		pc, err := a.ListenPacket(network, ":0")
		if err != nil {
			t.Fatalf("ListenPacket(%s): %v", network, err)
		}
		defer pc.Close()
		for _, addr := range []net.Addr{
			&net.TCPAddr{IP: net.ParseIP(addrB4), Port: 1},
			&net.UnixAddr{Name: "/tmp/x", Net: "unix"},
			(*net.UDPAddr)(nil),
			(*net.IPAddr)(nil),
			&net.UDPAddr{},
			&net.IPAddr{},
			nil,
		} {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s: WriteTo(%#v) panicked: %v", network, addr, r)
					}
				}()
				if _, err := pc.WriteTo([]byte{8, 0, 0, 0, 0, 0, 0, 0}, addr); err == nil {
					t.Errorf("%s: WriteTo(%#v) succeeded", network, addr)
				}
			}()
		}
	}
}

// TestLoopback: each stack has its own 127.0.0.1 and ::1, reached without
// the link: a listener on the stack answers a dial to its loopback, and
// an empty host in Dial means the stack itself, as with net.Dial.
func TestLoopback(t *testing.T) {
	a, _ := newPair(t, ustack.Config{}, ustack.Config{})
	ln, err := a.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, host := range []string{"127.0.0.1", "::1", "localhost", ""} {
		got := acceptOne(t, ln)
		c, err := a.Dial("tcp", net.JoinHostPort(host, itoa(port)))
		if err != nil {
			t.Fatalf("Dial %q: %v", host, err)
		}
		s := <-got
		if s == nil {
			t.Fatalf("no accept for %q", host)
		}
		if ip := addrIP(c.RemoteAddr()); !ip.IsLoopback() {
			t.Errorf("Dial %q reached %v, want a loopback address", host, ip)
		}
		c.Close()
		s.Close()
	}
}
