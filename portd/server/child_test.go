package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/portd"
	"github.com/ustack/ustack/portd/server"
)

// runChild is the test binary run as a child: a portd, a client stack (as
// another user), or a kernel-side peer in the namespace.
func runChild(args []string) error {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch arg(0) {
	case "portd": // portd SOCKET POLICY [NOFILE [fill]]: see portdChild
		return portdChild(arg(1), arg(2), arg(3), arg(4))
	case "hold": // hold SOCKET IFACE PORT: a stack serving SHA-256 of what it gets on PORT
		s, err := hostStack(arg(1), arg(2), arg(3))
		if err != nil {
			return err
		}
		ln, err := s.Listen("tcp", ":"+arg(3))
		if err != nil {
			return err
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			go func() {
				defer c.Close()
				h, _, _ := sum(c)
				fmt.Fprintln(c, h)
			}()
		}
	case "open": // open SOCKET IFACE PORT: a stack that holds PORT, then exits
		s, err := hostStack(arg(1), arg(2), arg(3))
		if err != nil {
			return err
		}
		fmt.Println("ok")
		return s.Close()
	case "dial": // dial SOCKET IFACE ADDR BYTES: send to a tcpsink, then ping
		s, err := hostStack(arg(1), arg(2), "")
		if err != nil {
			return err
		}
		defer s.Close()
		n, _ := strconv.ParseInt(arg(4), 10, 64)
		c, err := s.Dial("tcp", arg(3))
		if err != nil {
			return err
		}
		if err := sendAndCheck(c, n); err != nil {
			return err
		}
		for _, to := range []string{remoteAddr4, remoteAddr6} {
			if err := ping(s, to); err != nil {
				return err
			}
		}
		fmt.Println("ok")
		return nil
	case "beside-root-stacks": // see TestDefaultSocketBesideRootStacks
		return besideRootStacks()
	case "status": // status SOCKET: how many clients portd has
		hs, err := portd.Status(arg(1))
		if err != nil {
			return err
		}
		fmt.Println("holders", len(hs))
		return nil
	case "forge": // forge SOCKET IFACE DST: forged frames, then a correct one
		return forge(arg(1), arg(2), netip.MustParseAddrPort(arg(3)))
	case "tcpsink": // tcpsink ADDR: one connection, answered with the SHA-256 of its bytes
		ln, err := net.Listen("tcp", arg(1))
		if err != nil {
			return err
		}
		fmt.Println("ready")
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		h, _, err := sum(c)
		if err != nil {
			return err
		}
		fmt.Fprintln(c, h)
		return c.Close()
	case "tcpsend": // tcpsend ADDR BYTES
		c, err := net.Dial("tcp", arg(1))
		if err != nil {
			return err
		}
		n, _ := strconv.ParseInt(arg(2), 10, 64)
		if err := sendAndCheck(c, n); err != nil {
			return err
		}
		fmt.Println("ok")
		return nil
	case "bulk": // bulk ADDR: serve bulk transfers and echo (see bulk)
		ln, err := net.Listen("tcp", arg(1))
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
	case "udpsink": // udpsink ADDR: print every datagram's payload
		pc, err := net.ListenPacket("udp", arg(1))
		if err != nil {
			return err
		}
		fmt.Println("ready")
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return err
			}
			fmt.Println(string(buf[:n]))
		}
	}
	return attackChild(args)
}

// hostStack is a stack on host:iface through the portd at sock, holding
// TCP port if given.
func hostStack(sock, iface, port string) (*ustack.Stack, error) {
	return hostStackLogging(sock, iface, port, nil)
}

func hostStackLogging(sock, iface, port string, logf func(string, ...any)) (*ustack.Stack, error) {
	host := ustack.Host{Iface: iface, Portd: sock}
	if port != "" {
		p, err := ustack.ParseHostPort(port)
		if err != nil {
			return nil, err
		}
		host.Ports = []ustack.HostPort{p}
	}
	return ustack.New(ustack.Config{Net: host, Logf: logf})
}

// sendAndCheck sends stream(n) on c, half-closes, and compares the
// SHA-256 the peer answers with.
func sendAndCheck(c net.Conn, n int64) error {
	defer c.Close()
	if _, err := io.Copy(c, stream(n)); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the peer's hash: %w", err)
	}
	if got, want := strings.TrimSpace(line), wantSum(n); got != want {
		return fmt.Errorf("the peer received bytes hashing to %s, want %s", got, want)
	}
	return nil
}

func ping(s *ustack.Stack, to string) error {
	network, typ, reply, proto := "icmp", icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply), 1
	if strings.Contains(to, ":") {
		network, typ, reply, proto = "icmp6", ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	pc, err := s.ListenPacket(network, "")
	if err != nil {
		return err
	}
	defer pc.Close()
	payload := bytes.Repeat([]byte{0x5a}, 56)
	req, _ := (&icmp.Message{Type: typ, Body: &icmp.Echo{Seq: 1, Data: payload}}).Marshal(nil)
	// The first request may go before the neighbour is resolved; ask again.
	for try := 0; try < 5; try++ {
		if _, err := pc.WriteTo(req, &net.IPAddr{IP: net.ParseIP(to)}); err != nil {
			return err
		}
		pc.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err == nil && m.Type == reply {
			if e, ok := m.Body.(*icmp.Echo); ok && bytes.Equal(e.Data, payload) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %s", to)
}

// forge opens a session without a stack and writes frames straight to its
// frame socket: six that portd must refuse, then one it must pass.
func forge(sock, iface string, dst netip.AddrPort) error {
	sess, err := portd.Open(sock, portd.OpenRequest{Iface: iface, Ephemeral: 4})
	if err != nil {
		return err
	}
	hw, err := net.ParseMAC(sess.Info.MAC)
	if err != nil {
		return err
	}
	mac := [6]byte(hw)
	var me netip.Addr
	for _, a := range sess.Info.Addrs {
		if a.Is4() {
			me = a
		}
	}
	eph := sess.Info.EphemeralFirst
	ap := netip.AddrPortFrom
	remote := dst.Addr()
	// A datagram the remote sent us to port 22, as an ICMP error quotes it.
	quoted := server.UDPFrameForTest(mac, ap(remote, 53), ap(me, 22), []byte("q"))[10+14 : 10+14+28]
	forged := [][]byte{
		server.UDPFrameForTest(mac, ap(netip.MustParseAddr("10.78.0.77"), eph), dst, []byte("forged address")),
		server.UDPFrameForTest(mac, ap(me, 22), dst, []byte("forged port")),
		server.UDPFrameForTest([6]byte{2, 0, 0, 0, 0, 1}, ap(me, eph), dst, []byte("forged MAC")),
		// The kernel would write the checksum over the source port.
		server.WithVnetForTest(server.UDPFrameForTest(mac, ap(me, eph), dst, []byte("checksum over the port")), 1, 0, 34, 0),
		server.TCPFrameForTest(mac, ap(me, 22), ap(remote, 5555), 0x04),
		server.ICMPErrorFrameForTest(mac, me, remote, 3, quoted),
		// A loose source route through another host.
		server.WithIPv4OptionsForTest(server.UDPFrameForTest(mac, ap(me, eph), dst, []byte("source route")), []byte{0x83, 7, 4, 10, 78, 0, 9, 0}),
	}
	fd := sess.FrameFd()
	for _, f := range forged {
		if _, err := syscall.Write(fd, f); err != nil {
			return err
		}
	}
	if _, err := syscall.Write(fd, server.UDPFrameForTest(mac, ap(me, eph), dst, []byte("valid"))); err != nil {
		return err
	}
	fmt.Printf("sent %d forged\n", len(forged))
	select {}
}
