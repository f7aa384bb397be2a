package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/portd"
	"github.com/ustack/ustack/portd/server"
)

// The same checks on both paths into a stack: frames with bad checksums
// that the namespace's kernel sends to a stack are counted and dropped
// whether the stack is root on the interface or a user's behind portd
// (both read through link's packet-socket endpoint, in one frame format),
// and frames with bad checksums that a client writes to portd never reach
// the wire.

// badFrame is a frame the namespace sends to the stack, and the counter
// it must land in if it is bad ("" for a good one, delivered).
type badFrame struct {
	name    string
	frame   []byte // Ethernet, no virtio-net header
	counter string // "ip", "tcp", "udp" or ""
}

// inboundFrames are the frames from src (the namespace's MAC and
// addresses) to the stack at dst (the interface's MAC and addresses) on
// port, the good ones (UDP, payload "good4" and "last") after the bad.
func inboundFrames(src, dst [6]byte, port uint16) []badFrame {
	ap := netip.AddrPortFrom
	from4, from6 := netip.MustParseAddr(remoteAddr4), netip.MustParseAddr(remoteAddr6)
	to4, to6 := ap(netip.MustParseAddr(hostAddr4), port), ap(netip.MustParseAddr("fd78::2"), port)
	const syn = 0x02
	frames := []badFrame{
		{"udp over ipv4, bad ip header checksum", server.WithBadIPv4SumForTest(server.UDPFrameForTest(src, ap(from4, 5000), to4, []byte("bad ip header"))), "ip"},
		{"udp over ipv4, bad checksum", server.WithBadL4SumForTest(server.UDPFrameForTest(src, ap(from4, 5001), to4, []byte("bad udp4"))), "udp"},
		{"tcp syn over ipv4, bad checksum", server.WithBadL4SumForTest(server.TCPFrameForTest(src, ap(from4, 5002), to4, syn)), "tcp"},
		{"tcp syn over ipv4, bad ip header checksum", server.WithBadIPv4SumForTest(server.TCPFrameForTest(src, ap(from4, 5003), to4, syn)), "ip"},
		{"udp over ipv6, bad checksum", server.WithBadL4SumForTest(server.UDPFrameForTest(src, ap(from6, 5004), to6, []byte("bad udp6"))), "udp"},
		{"tcp syn over ipv6, bad checksum", server.WithBadL4SumForTest(server.TCPFrameForTest(src, ap(from6, 5005), to6, syn)), "tcp"},
		{"udp over ipv4", server.UDPFrameForTest(src, ap(from4, 5006), to4, []byte("good4")), ""},
		{"udp over ipv6", server.UDPFrameForTest(src, ap(from6, 5007), to6, []byte("last")), ""},
	}
	for i := range frames {
		f := frames[i].frame[10:] // no virtio-net header on the wire
		copy(f[0:6], dst[:])
		frames[i].frame = f
	}
	return frames
}

// TestBadFramesBothPaths: the namespace's kernel sends the stack, first
// as root on the interface and then as nobody through portd, IPv4 and
// IPv6 TCP SYNs and UDP datagrams with bad IP header or transport
// checksums, then good datagrams. On both paths each bad frame is counted
// where netstack counts it (IP.MalformedPacketsReceived,
// TCP.ChecksumErrors, UDP.ChecksumErrors), none is delivered (the UDP
// socket reads only the good payloads, TCP takes no segment), and the good
// ones are.
func TestBadFramesBothPaths(t *testing.T) {
	n := setup(t)
	n.startServer(t)
	want := map[string]int{}
	for _, f := range inboundFrames([6]byte{}, [6]byte{}, 0) {
		want[f.counter]++
	}
	good := []string{"good4", "last"}
	if want[""] != len(good) {
		t.Fatalf("%d good frames in the table, want %d", want[""], len(good))
	}
	wantCounted := fmt.Sprintf("counted ip=%d tcp=%d udp=%d tcp-segments=0", want["ip"], want["tcp"], want["udp"])
	ifi, err := net.InterfaceByName(n.dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []struct {
		name string
		uid  int
		sock string // "-": root host mode
		port string
	}{
		{"root host mode", 0, "-", "8085"},
		{"portd as nobody", nobody, n.sock(), "8086"},
	} {
		t.Run(path.name, func(t *testing.T) {
			stack := n.start(t, path.uid, false, "badframes-stack", path.sock, n.dev, path.port)
			stack.expect(t, "ready")
			inject := n.start(t, 0, true, "inject", n.peer(), ifi.HardwareAddr.String(), path.port)
			inject.expect(t, fmt.Sprintf("sent %d", want["ip"]+want["tcp"]+want["udp"]+len(good)))
			var got []string
			for {
				line := stack.line(t)
				if strings.HasPrefix(line, "counted") || strings.HasPrefix(line, "error") || strings.HasPrefix(line, "(") {
					t.Log(line)
					if line != wantCounted {
						t.Errorf("stack's counters: %q, want %q", line, wantCounted)
					}
					break
				}
				got = append(got, line)
			}
			if strings.Join(got, ",") != strings.Join(good, ",") {
				t.Errorf("the stack's UDP socket read %q, want only the good datagrams %q", got, good)
			}
		})
	}
}

// badFramesChild runs the child modes of the tests above.
func badFramesChild(args []string) error {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch arg(0) {
	case "badframes-stack": // badframes-stack SOCKET IFACE PORT: a stack (root on IFACE if SOCKET is -) printing the UDP payloads it reads on PORT, its drop counters after "last"
		return badFramesStack(arg(1), arg(2), arg(3))
	case "inject": // inject IFACE DSTMAC PORT: write inboundFrames to IFACE's wire
		return injectFrames(arg(1), arg(2), arg(3))
	case "badsums": // badsums SOCKET IFACE DSTMAC DST4 DST6: frames with bad checksums, then a good one to DST4
		return badSums(arg(1), arg(2), arg(3), netip.MustParseAddrPort(arg(4)), netip.MustParseAddrPort(arg(5)))
	}
	return fmt.Errorf("unknown child mode %q", args)
}

func badFramesStack(sock, iface, port string) error {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return err
	}
	host := ustack.Host{Iface: iface, Ports: []ustack.HostPort{{Port: uint16(p)}, {Port: uint16(p), UDP: true}}}
	if sock != "-" {
		host.Portd = sock
	}
	s, err := ustack.New(ustack.Config{Net: host})
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := s.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			fmt.Println("accepted a connection from", c.RemoteAddr())
		}
	}()
	pc, err := s.ListenPacket("udp", ":"+port)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	// One reader goroutine on each path delivers frames in the order of
	// the wire: once "last" is read, every frame before it was counted or
	// delivered.
	buf := make([]byte, 2048)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		fmt.Println(string(buf[:n]))
		if string(buf[:n]) == "last" {
			break
		}
	}
	st := s.Netstack().Stats()
	fmt.Printf("counted ip=%d tcp=%d udp=%d tcp-segments=%d\n", st.IP.MalformedPacketsReceived.Value(),
		st.TCP.ChecksumErrors.Value(), st.UDP.ChecksumErrors.Value(), st.TCP.ValidSegmentsReceived.Value())
	select {}
}

func injectFrames(iface, dstMAC, port string) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	dst, err := net.ParseMAC(dstMAC)
	if err != nil {
		return err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	frames := inboundFrames([6]byte(ifi.HardwareAddr), [6]byte(dst), uint16(p))
	to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], dst)
	for _, f := range frames {
		if err := unix.Sendto(fd, f.frame, 0, to); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	fmt.Println("sent", len(frames))
	select {}
}

// csumErrors sums the checksum errors the namespace's kernel counted
// (IpExt, Tcp, Udp, Udp6 and the rest's InCsumErrors).
func csumErrors(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/snmp", "/proc/net/netstat", "/proc/net/snmp6").Output()
	if err != nil {
		t.Fatalf("reading the namespace's counters: %v", err)
	}
	total := 0
	var names []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && !strings.HasSuffix(f[0], ":"): // snmp6: name value
			if strings.HasSuffix(f[0], "InCsumErrors") {
				v, _ := strconv.Atoi(f[1])
				total += v
			}
		case len(f) > 1 && names == nil: // snmp, netstat: a line of names, then one of values
			names = f
		case len(f) > 1:
			for i := 1; i < len(f) && i < len(names); i++ {
				if names[i] == "InCsumErrors" {
					v, _ := strconv.Atoi(f[i])
					total += v
				}
			}
			names = nil
		}
	}
	return total
}

// TestPortdBadChecksumsOut: a client of portd writes to its frame socket
// UDP and TCP frames with bad IPv4 header, UDP or TCP checksums (over IPv4
// and IPv6), then a good datagram. portd refuses and counts the bad ones,
// and they never reach the wire: the namespace's kernel counts no
// checksum error, and its UDP socket reads the good datagram.
func TestPortdBadChecksumsOut(t *testing.T) {
	n := setup(t)
	srv, _ := n.startServer(t)
	sink := n.start(t, 0, true, "udpsink", remoteAddr4+":9999")
	sink.expect(t, "ready")
	before := csumErrors(t, n.ns)
	// The peer's MAC: its kernel drops TCP to a broadcast MAC before it
	// looks at the checksum.
	link := strings.Fields(n.inNS(t, "-br", "link", "show", "dev", n.peer()))
	if len(link) < 3 {
		t.Fatalf("the peer's link: %q", link)
	}
	client := n.start(t, nobody, false, "badsums", n.sock(), n.dev, link[2], remoteAddr4+":9999", "["+remoteAddr6+"]:9999")
	client.expect(t, "sent 5 bad")
	if got := sink.line(t); got != "valid" {
		t.Fatalf("the namespace received %q, want the valid datagram", got)
	}
	testwait.For(t, "portd's count of the valid frame", func() bool {
		hs := srv.Holders()
		return len(hs) == 1 && hs[0].Sent > 0
	})
	if hs := srv.Holders(); len(hs) != 1 || hs[0].Refused != 5 || hs[0].Sent != 1 {
		t.Errorf("holders %+v, want one with 5 frames refused and 1 sent", hs)
	}
	after := csumErrors(t, n.ns)
	t.Logf("the namespace's kernel counted %d checksum errors before the frames, %d after", before, after)
	if after != before {
		t.Errorf("the namespace's kernel counted %d checksum errors, want none: bad frames reached the wire", after-before)
	}
}

// badSums opens a session without a stack and writes frames with bad
// checksums to its frame socket, then a good datagram to dst4, all to the
// MAC dstMAC.
func badSums(sock, iface, dstMAC string, dst4, dst6 netip.AddrPort) error {
	dst, err := net.ParseMAC(dstMAC)
	if err != nil {
		return err
	}
	sess, err := portd.Open(sock, portd.OpenRequest{Iface: iface, Ephemeral: 4})
	if err != nil {
		return err
	}
	hw, err := net.ParseMAC(sess.Info.MAC)
	if err != nil {
		return err
	}
	mac := [6]byte(hw)
	var me4, me6 netip.Addr
	for _, a := range sess.Info.Addrs {
		if a.Is4() {
			me4 = a
		} else if !a.IsLinkLocalUnicast() {
			me6 = a
		}
	}
	eph := sess.Info.EphemeralFirst
	fd := sess.FrameFd()
	ap := netip.AddrPortFrom
	bad := [][]byte{
		server.WithBadIPv4SumForTest(server.UDPFrameForTest(mac, ap(me4, eph), dst4, []byte("bad ip header"))),
		server.WithBadL4SumForTest(server.UDPFrameForTest(mac, ap(me4, eph), dst4, []byte("bad udp4"))),
		server.WithBadL4SumForTest(server.TCPFrameForTest(mac, ap(me4, eph), ap(dst4.Addr(), 5555), 0x02)),
		server.WithBadL4SumForTest(server.UDPFrameForTest(mac, ap(me6, eph), dst6, []byte("bad udp6"))),
		server.WithBadL4SumForTest(server.TCPFrameForTest(mac, ap(me6, eph), ap(dst6.Addr(), 5555), 0x02)),
	}
	for _, f := range append(bad, server.UDPFrameForTest(mac, ap(me4, eph), dst4, []byte("valid"))) {
		copy(f[10:16], dst) // after the virtio-net header
		if _, err := syscall.Write(fd, f); err != nil {
			return err
		}
	}
	fmt.Printf("sent %d bad\n", len(bad))
	select {}
}
