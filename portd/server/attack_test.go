package server_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/portd"
	"github.com/ustack/ustack/portd/server"
)

// The attacks of a local user without privileges on portd, each run as
// that user (nobody, or uid 65533) against a portd the test starts.

const (
	secondAddr4 = "10.78.0.3" // the interface's second address
	badMAC      = "02:de:ad:be:ef:01"
)

// addAddr4 gives the test's interface another IPv4 address.
func (n *testNet) addAddr4(t *testing.T, addr string) {
	t.Helper()
	if out, err := exec.Command("ip", "addr", "add", addr+"/24", "dev", n.dev).CombinedOutput(); err != nil {
		t.Fatalf("ip addr add %s: %v: %s", addr, err, out)
	}
}

// peer is the name of the veth's end in the namespace.
func (n *testNet) peer() string { return strings.Replace(n.dev, "ustd", "ustq", 1) }

// inNS runs ip with args in the test's namespace.
func (n *testNet) inNS(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writePolicy writes a policy of the test's own.
func (n *testNet) writePolicy(t testing.TB, text string) string {
	path := filepath.Join(n.dir, "test.policy")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServerWith runs portd in the test process with the policy text.
func (n *testNet) startServerWith(t *testing.T, text string) (*server.Server, *logLines) {
	t.Helper()
	pol, err := server.ParsePolicy("test.policy", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	srv, err := server.Listen(n.sock(), pol, logs.logf)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(t.Context())
	t.Cleanup(func() {
		srv.Close()
		logs.mu.Lock()
		for _, l := range logs.lines {
			t.Log(l)
		}
		logs.mu.Unlock()
	})
	return srv, logs
}

// TestPortdNDPSpoofing: a client that holds no fixed port sends a
// neighbour solicitation from the host's IPv6 address naming another MAC,
// an advertisement of the host's address with another MAC, and duplicate
// address detection of an address the peer is configuring. Before, portd
// passed all three: the peer's neighbour cache pointed the host's address
// at the attacker's MAC and the peer's new address failed DAD. Now all
// three are refused and counted, and the peer's state is untouched.
func TestPortdNDPSpoofing(t *testing.T) {
	n := setup(t)
	srv, _ := n.startServer(t)
	peer := n.peer()
	// The peer configures fd78::77 with duplicate address detection that
	// lasts a few seconds, long enough for the attack to land in it.
	for _, key := range []string{"dad_transmits=5", "accept_dad=1"} {
		if out, err := exec.Command("ip", "netns", "exec", n.ns, "sysctl", "-qw", "net.ipv6.conf."+peer+"."+key).CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s: %v: %s", key, err, out)
		}
	}
	sink := n.start(t, 0, true, "udpsink", "["+remoteAddr6+"]:9999")
	sink.expect(t, "ready")
	n.inNS(t, "-6", "addr", "add", "fd78::77/64", "dev", peer)
	spoof := n.start(t, nobody, false, "ndpspoof", n.sock(), n.dev, "["+remoteAddr6+"]:9999")
	spoof.expect(t, "sent 3 forged")
	if got := sink.line(t); got != "valid" {
		t.Fatalf("the peer received %q, want the valid datagram", got)
	}
	// The forged frames went before the valid one, on the same wire.
	if neigh := n.inNS(t, "-6", "neigh", "show", "fd78::2", "dev", peer); strings.Contains(neigh, badMAC) {
		t.Errorf("the peer's neighbour cache points the host's address at the attacker's MAC: %s", neigh)
	}
	testwait.For(t, "the end of the peer's duplicate address detection", func() bool {
		return !strings.Contains(n.inNS(t, "-6", "addr", "show", "dev", peer), "tentative")
	})
	if addrs := n.inNS(t, "-6", "addr", "show", "dev", peer); strings.Contains(addrs, "dadfailed") {
		t.Errorf("the peer's new address failed duplicate address detection:\n%s", addrs)
	}
	testwait.For(t, "portd's count of the valid frame", func() bool {
		hs := srv.Holders()
		return len(hs) == 1 && hs[0].Sent > 0
	})
	hs := srv.Holders()
	if len(hs) != 1 || hs[0].Refused != 3 || hs[0].Sent != 1 {
		t.Errorf("holders %+v, want one with 3 frames refused and 1 sent", hs)
	}
}

// TestPortdSessionNeedsRule: a session that asks for no port at all is
// still checked against the policy. Before, one opened under an empty
// policy and on an interface no rule names, and could send ARP, NDP and
// ICMP there.
func TestPortdSessionNeedsRule(t *testing.T) {
	n := setup(t)
	for _, tc := range []struct{ name, policy string }{
		{"empty policy", ""},
		{"another interface", fmt.Sprintf("allow user:%d lo tcp 9000\n", nobody)},
		{"another user", fmt.Sprintf("allow user:%d %s tcp 9000\n", otherUser, n.dev)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := n.startServerWith(t, tc.policy)
			c := n.start(t, nobody, false, "sessions", n.sock(), n.dev, "0")
			line := c.line(t)
			if !strings.HasPrefix(line, "refused 1: denied: ") || !strings.Contains(line, "no rule of the policy test.policy allows the user on the interface") {
				t.Errorf("session without ports: %q, want a refusal", line)
			}
			if hs := srv.Holders(); len(hs) != 0 {
				t.Errorf("holders %+v, want none", hs)
			}
			srv.Close()
		})
	}
	srv, _ := n.startServerWith(t, fmt.Sprintf("allow user:%d %s tcp 9000\n", nobody, n.dev))
	c := n.start(t, nobody, false, "sessions", n.sock(), n.dev, "0")
	c.expect(t, "ok 1")
	if hs := srv.Holders(); len(hs) != 1 {
		t.Errorf("holders %+v, want the session the rule allows", hs)
	}
}

// TestPortdAddressIsolation: with two addresses on the interface, a client
// holding tcp port 8089 on the first sees none of the traffic to port 8089
// on the second, where the host (root) serves, and the host's server
// works. Before, the packet filter matched the port alone and the client
// received root's segments.
func TestPortdAddressIsolation(t *testing.T) {
	n := setup(t)
	n.addAddr4(t, secondAddr4)
	n.startServer(t)
	sniff := n.start(t, nobody, false, "sniff", n.sock(), n.dev, hostAddr4, "8089")
	sniff.expect(t, "ready")
	// Another user's stack holds the same port on the second address.
	other := n.start(t, otherUser, false, "sniff", n.sock(), n.dev, secondAddr4, "8088")
	other.expect(t, "ready")
	ln, err := net.Listen("tcp", secondAddr4+":8089")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h, _, _ := sum(c)
				fmt.Fprintln(c, h)
			}()
		}
	}()
	send := n.start(t, 0, true, "tcpsend", secondAddr4+":8089", "1048576")
	send.expect(t, "ok")
	// The other user's: a datagram to the second address's 8088.
	udp := n.start(t, 0, true, "udpsend", secondAddr4+":8088", "for the other user")
	udp.expect(t, "ok")
	other.expect(t, "frame "+secondAddr4+":8088")
	// Then one to the client, which arrives after all of the above.
	udp = n.start(t, 0, true, "udpsend", hostAddr4+":8089", "sentinel")
	udp.expect(t, "ok")
	if got := sniff.line(t); got != "frame "+hostAddr4+":8089" {
		t.Fatalf("the client holding %s:8089 received %q first, want only its own datagram", hostAddr4, got)
	}
}

// TestPortdLimits: one user cannot hoard sessions or ports; another user
// is not affected by the first one's use; and every refusal names the
// limit.
func TestPortdLimits(t *testing.T) {
	n := setup(t)
	_, logs := n.startServerWith(t, fmt.Sprintf(
		"allow * %s tcp,udp ephemeral\nlimit user:%d sessions 2\nlimit user:%d ports 300\n", n.dev, nobody, otherUser))
	a := n.start(t, nobody, false, "sessions", n.sock(), n.dev, "64,64,64")
	a.expect(t, "ok 1")
	a.expect(t, "ok 2")
	if got := a.line(t); !strings.HasPrefix(got, "refused 3: limit: ") || !strings.Contains(got, "the user has 2 sessions open, the most the policy test.policy allows (test.policy:2: sessions 2)") {
		t.Errorf("third session of nobody: %q, want the session limit", got)
	}
	b := n.start(t, otherUser, false, "sessions", n.sock(), n.dev, "100,100,50")
	b.expect(t, "ok 1")
	if got := b.line(t); !strings.HasPrefix(got, "refused 2: limit: ") || !strings.Contains(got, "200 more ports would make 400, over the 300") {
		t.Errorf("second session of uid %d: %q, want the port limit", otherUser, got)
	}
	// A smaller block still fits: 200 and 100 make 300.
	b.expect(t, "ok 3")
	if logs.count("refused: ") != 2 {
		t.Errorf("portd logged %d refusals, want 2", logs.count("refused: "))
	}
}

// TestPortdEphemeralShare: portd gives its clients at most half of the
// host's ephemeral range, all users together, whatever the policy says:
// the host's own programs keep the other half for their connections.
func TestPortdEphemeralShare(t *testing.T) {
	n := setup(t)
	lo, hi := hostports.EphemeralRange()
	half := (hi - lo + 1) / 2
	if half+1 > 16384 {
		t.Skipf("the host's ephemeral range %d-%d is too wide for a block over its half", lo, hi)
	}
	n.startServerWith(t, fmt.Sprintf("allow * %s tcp,udp ephemeral:16384\nlimit user:%d ports 1000000\n", n.dev, nobody))
	c := n.start(t, nobody, false, "sessions", n.sock(), n.dev, fmt.Sprintf("%d,64", half+1))
	if got := c.line(t); !strings.HasPrefix(got, "refused 1: limit: ") || !strings.Contains(got, fmt.Sprintf("over the half of the host's ephemeral range (%d)", half)) {
		t.Errorf("a block of %d ports: %q, want a refusal naming half the host's range", half+1, got)
	}
	c.expect(t, "ok 2")
}

// TestPortdConnectionLimit: a user's connections to portd, sessions or
// not, are bounded too: each one costs portd a descriptor.
func TestPortdConnectionLimit(t *testing.T) {
	n := setup(t)
	n.startServerWith(t, fmt.Sprintf("allow * %s tcp,udp ephemeral\nlimit user:%d sessions 1\n", n.dev, nobody))
	c := n.start(t, nobody, false, "conns", n.sock(), "6")
	for i := 1; i <= 5; i++ {
		c.expect(t, fmt.Sprintf("ok %d", i))
	}
	if got := c.line(t); !strings.HasPrefix(got, "refused 6: limit: ") || !strings.Contains(got, "the user has 5 connections to portd open") {
		t.Errorf("the sixth connection: %q, want a refusal naming the limit", got)
	}
	other := n.start(t, otherUser, false, "conns", n.sock(), "1")
	other.expect(t, "ok 1")
}

// TestPortdFragments: fragmented UDP datagrams pass both ways between a
// client's stack and the peer: the frame check lets the later fragments
// of what the client sends through, and the client gets the later
// fragments of what is sent to it.
func TestPortdFragments(t *testing.T) {
	n := setup(t)
	srv, _ := n.startServer(t)
	echo := n.start(t, nobody, false, "udpecho", n.sock(), n.dev, "8084")
	echo.expect(t, "ready")
	big := n.start(t, 0, true, "udpbig", hostAddr4+":8084", "5000")
	big.expect(t, "ok")
	hs := srv.Holders()
	if len(hs) != 1 || hs[0].Refused != 0 {
		t.Errorf("holders %+v, want one that sent nothing refused", hs)
	}
}

// TestPortdDescriptorBudget: a portd whose descriptors would run out
// refuses the session that would take them, saying so, instead of failing
// halfway; a session that fits is served.
func TestPortdDescriptorBudget(t *testing.T) {
	n := setup(t)
	pd := n.start(t, 0, false, "portd", n.sock(), n.policy(t), "200")
	pd.expect(t, "ready")
	c := n.start(t, nobody, false, "sessions", n.sock(), n.dev, "64")
	if got := c.line(t); !strings.HasPrefix(got, "refused 1: limit: ") || !strings.Contains(got, "descriptors and portd has") || !strings.Contains(got, "RLIMIT_NOFILE 200") {
		t.Errorf("a session of 256 reserving sockets from a portd with 200 descriptors: %q, want a refusal naming them", got)
	}
	c = n.start(t, nobody, false, "sessions", n.sock(), n.dev, "8")
	c.expect(t, "ok 1")
}

// TestPortdAcceptEMFILE: a portd out of descriptors (here it holds them
// itself) cannot accept clients; it logs that once and serves them as soon
// as it has descriptors again. Before, Serve returned on the accept error
// and portd exited, ending every session.
func TestPortdAcceptEMFILE(t *testing.T) {
	n := setup(t)
	pd := n.start(t, 0, false, "portd", n.sock(), n.policy(t), "256", "fill")
	pd.expect(t, "ready")
	pd.expect(t, "full")
	hold := make(chan string, 1)
	go func() {
		hs, err := portd.Status(n.sock())
		hold <- fmt.Sprint(len(hs), err)
	}()
	if got := pd.line(t); !strings.Contains(got, "accepting a client") || !strings.Contains(got, "too many open files") {
		t.Fatalf("portd said %q, want the accept error", got)
	}
	pd.cmd.Process.Signal(syscall.SIGUSR1) // give the descriptors back
	select {
	case got := <-hold:
		if got != "0 <nil>" {
			t.Errorf("status once portd had descriptors again: %s, want 0 holders", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client waiting while portd was out of descriptors was never served")
	}
	if pd.cmd.ProcessState != nil {
		t.Fatalf("portd exited: %v", pd.cmd.ProcessState)
	}
}

// TestPortdStatusOwnSessions: a user's ustack portd status lists that
// user's sessions only; root's lists everyone's.
func TestPortdStatusOwnSessions(t *testing.T) {
	n := setup(t)
	n.startServer(t)
	a := n.start(t, nobody, false, "sessions", n.sock(), n.dev, "8")
	a.expect(t, "ok 1")
	b := n.start(t, otherUser, false, "sessions", n.sock(), n.dev, "8,8")
	b.expect(t, "ok 1")
	b.expect(t, "ok 2")
	for _, tc := range []struct {
		uid  int
		want string
	}{{nobody, "holders 1"}, {otherUser, "holders 2"}} {
		c := n.start(t, tc.uid, false, "status", n.sock())
		c.expect(t, tc.want)
	}
	if hs, err := portd.Status(n.sock()); err != nil || len(hs) != 3 {
		t.Errorf("root's status: %d holders, %v; want 3", len(hs), err)
	}
}

// TestPortdKilled: portd killed with SIGKILL during a transfer into a
// client's stack. The kernel removes the client's nftables table with
// portd's netlink socket, so the peer's next segment is refused (reset)
// at once instead of being dropped until it times out; the client's stack
// logs one line, aborts its connection and shows its attachment down; and
// the next portd starts with no holders.
func TestPortdKilled(t *testing.T) {
	n := setup(t)
	policy := n.policy(t)
	pd := n.start(t, 0, false, "portd", n.sock(), policy)
	pd.expect(t, "ready")
	hold := n.start(t, nobody, false, "holdlog", n.sock(), n.dev, "8083")
	hold.expect(t, "ready")
	hs, err := portd.Status(n.sock())
	if err != nil || len(hs) != 1 {
		t.Fatalf("status: %+v, %v; want one holder", hs, err)
	}
	table := hs[0].Table
	stream := n.start(t, 0, true, "tcpstream", hostAddr4+":8083")
	stream.expect(t, "sending")
	testwait.For(t, "the transfer to reach the stack", func() bool {
		hs, err := portd.Status(n.sock())
		return err == nil && len(hs) == 1 && hs[0].Received > 100
	})
	pd.cmd.Process.Signal(syscall.SIGKILL)
	pd.cmd.Wait()
	killed := time.Now()
	testwait.For(t, "the table's removal with portd's netlink socket", func() bool {
		ok, err := hostports.TableExists(table)
		return err == nil && !ok
	})
	if got := stream.line(t); !strings.HasPrefix(got, "failed: ") ||
		!strings.Contains(got, "connection reset by peer") && !strings.Contains(got, "broken pipe") {
		t.Errorf("the peer's transfer: %q, want it reset", got)
	}
	t.Logf("the peer's transfer failed %v after portd's SIGKILL", time.Since(killed).Round(time.Millisecond))
	want := map[string]bool{
		"log: ustack portd went away: the stack's link is down":        false,
		"attachment host:" + n.dev + " (down: ustack portd went away)": false,
		"conn ended": false,
	}
	for seen := 0; seen < len(want); {
		line := hold.line(t)
		key := line
		if strings.HasPrefix(line, "conn ended: ") {
			key = "conn ended"
			if line == "conn ended: <nil>" {
				t.Errorf("the stack's connection ended cleanly, want it aborted")
			}
		}
		if done, ok := want[key]; ok && !done {
			want[key] = true
			seen++
		}
	}
	if _, err := portd.Status(n.sock()); !errors.Is(err, portd.ErrNotRunning) {
		t.Errorf("status with portd dead: %v, want ErrNotRunning", err)
	}
	if l, err := net.Listen("tcp", hostAddr4+":8083"); err != nil {
		t.Errorf("port 8083 after portd's SIGKILL: %v, want it free", err)
	} else {
		l.Close()
	}
	pd2 := n.start(t, 0, false, "portd", n.sock(), policy)
	pd2.expect(t, "ready")
	if hs, err := portd.Status(n.sock()); err != nil || len(hs) != 0 {
		t.Errorf("status after the restart: %+v, %v; want no holders", hs, err)
	}
}

// portdChild is the "portd" child: portd serving sock with the policy
// file, with its descriptor limit set to nofile if given. With fill, it
// then takes all its free descriptors itself, says "full", and gives them
// back on SIGUSR1; it logs to stdout.
func portdChild(sock, policy, nofile, fill string) error {
	if nofile != "" {
		n, _ := strconv.ParseUint(nofile, 10, 64)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			return err
		}
	}
	pol, err := server.LoadPolicy(policy)
	if err != nil {
		return err
	}
	logTo := os.Stderr
	if fill != "" {
		logTo = os.Stdout
	}
	srv, err := server.Listen(sock, pol, func(f string, a ...any) { fmt.Fprintf(logTo, f+"\n", a...) })
	if err != nil {
		return err
	}
	fmt.Println("ready")
	if fill != "" {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		var taken []int
		for {
			fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				break
			}
			taken = append(taken, fd)
		}
		fmt.Println("full")
		go func() {
			<-usr1
			for _, fd := range taken {
				unix.Close(fd)
			}
		}()
	}
	return srv.Serve(context.Background())
}

// attackChild runs the child modes of these tests.
func attackChild(args []string) error {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch arg(0) {
	case "ndpspoof": // ndpspoof SOCKET IFACE DST: forged neighbour discovery, then a valid datagram to DST
		return ndpSpoof(arg(1), arg(2), netip.MustParseAddrPort(arg(3)))
	case "sniff": // sniff SOCKET IFACE ADDR PORT: hold tcp and udp PORT on ADDR alone, print what arrives to a TCP or UDP port
		return sniff(arg(1), arg(2), netip.MustParseAddr(arg(3)), arg(4))
	case "sessions": // sessions SOCKET IFACE EPHEMERAL,...: open a session of each block size, one after the other, and hold them
		for i, size := range strings.Split(arg(3), ",") {
			i++
			eph, _ := strconv.Atoi(size)
			if _, err := portd.Open(arg(1), portd.OpenRequest{Iface: arg(2), Ephemeral: eph}); err != nil {
				var re *portd.RefusedError
				if !errors.As(err, &re) {
					return err
				}
				fmt.Printf("refused %d: %s: %s\n", i, re.Code, re.Msg)
				continue
			}
			fmt.Println("ok", i)
		}
		select {}
	case "holdlog": // holdlog SOCKET IFACE PORT: hold's stack, printing its log, its attachment after each line, and connections that fail
		var s atomic.Pointer[ustack.Stack]
		logf := func(f string, a ...any) {
			fmt.Printf("log: "+f+"\n", a...)
			if st := s.Load(); st != nil {
				fmt.Println("attachment", st.Attachment(), "(down: "+st.LinkDown()+")")
			}
		}
		st, err := hostStackLogging(arg(1), arg(2), arg(3), logf)
		if err != nil {
			return err
		}
		s.Store(st)
		ln, err := st.Listen("tcp", ":"+arg(3))
		if err != nil {
			return err
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				fmt.Println("accept ended:", err)
				select {}
			}
			go func() {
				defer c.Close()
				_, err := io.Copy(io.Discard, c)
				fmt.Println("conn ended:", err)
			}()
		}
	case "tcpstream": // tcpstream ADDR: send until the connection fails
		c, err := net.Dial("tcp", arg(1))
		if err != nil {
			return err
		}
		fmt.Println("sending")
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				fmt.Println("failed:", err)
				return nil
			}
		}
	case "conns": // conns SOCKET N: N connections to portd, each asking for the status, all kept open
		count, _ := strconv.Atoi(arg(2))
		var keep []int
		for i := 1; i <= count; i++ {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			keep = append(keep, fd)
			if err := unix.Connect(fd, &unix.SockaddrUnix{Name: arg(1)}); err != nil {
				return err
			}
			if _, err := unix.Write(fd, []byte(`{"op":"status"}`)); err != nil {
				return err
			}
			buf := make([]byte, 1<<16)
			m, err := unix.Read(fd, buf)
			if err != nil {
				return err
			}
			var rep portd.Reply
			if err := json.Unmarshal(buf[:m], &rep); err != nil {
				return err
			}
			if rep.Error != "" {
				fmt.Printf("refused %d: %s: %s\n", i, rep.Code, rep.Error)
				continue
			}
			fmt.Println("ok", i)
		}
		select {}
	case "udpecho": // udpecho SOCKET IFACE PORT: a stack echoing UDP datagrams on PORT
		st, err := hostStack(arg(1), arg(2), "")
		if err != nil {
			return err
		}
		pc, err := st.ListenPacket("udp", ":"+arg(3))
		if err != nil {
			return err
		}
		fmt.Println("ready")
		buf := make([]byte, 1<<16)
		for {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return err
			}
			pc.WriteTo(buf[:m], from)
		}
	case "udpbig": // udpbig ADDR SIZE: a datagram of SIZE bytes, which must come back whole
		size, _ := strconv.Atoi(arg(2))
		c, err := net.Dial("udp", arg(1))
		if err != nil {
			return err
		}
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i * 7)
		}
		buf := make([]byte, 1<<16)
		// The first may meet an unresolved neighbour; ask again.
		for try := 0; try < 10; try++ {
			if _, err := c.Write(msg); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			m, err := c.Read(buf)
			if err == nil && string(buf[:m]) == string(msg) {
				fmt.Println("ok")
				return nil
			}
		}
		return fmt.Errorf("no echo of %d bytes", size)
	case "udpsend": // udpsend ADDR TEXT
		c, err := net.Dial("udp", arg(1))
		if err != nil {
			return err
		}
		if _, err := c.Write([]byte(arg(2))); err != nil {
			return err
		}
		fmt.Println("ok")
		return nil
	}
	return badFramesChild(args)
}

// ndpSpoof is the NDP attack: a session with no fixed port writes to its
// frame socket a solicitation from the host's address naming badMAC, an
// advertisement of the host's address naming badMAC, and duplicate
// address detection of the peer's fd78::77, then a valid datagram.
func ndpSpoof(sock, iface string, dst netip.AddrPort) error {
	sess, err := portd.Open(sock, portd.OpenRequest{Iface: iface, Ephemeral: 4})
	if err != nil {
		return err
	}
	hw, _ := net.ParseMAC(sess.Info.MAC)
	mac := [6]byte(hw)
	bad, _ := net.ParseMAC(badMAC)
	var me netip.Addr
	for _, a := range sess.Info.Addrs {
		if a.Is6() {
			me = a
		}
	}
	peer, tentative := dst.Addr(), netip.MustParseAddr("fd78::77")
	solicited := netip.MustParseAddr("ff02::1:ff00:77")
	naFlags := func(b []byte) []byte { b[0] = 0x20; return b } // override
	forged := [][]byte{
		server.ICMP6FrameForTest(mac, me, peer, 135, server.NDPForTest(peer, server.LLAForTest(1, [6]byte(bad)))),
		server.ICMP6FrameForTest(mac, me, netip.MustParseAddr("ff02::1"), 136, naFlags(server.NDPForTest(me, server.LLAForTest(2, [6]byte(bad))))),
		server.ICMP6FrameForTest(mac, netip.IPv6Unspecified(), solicited, 135, server.NDPForTest(tentative)),
	}
	fd := sess.FrameFd()
	for _, f := range forged {
		if _, err := syscall.Write(fd, f); err != nil {
			return err
		}
	}
	valid := server.UDPFrameForTest(mac, netip.AddrPortFrom(me, sess.Info.EphemeralFirst), dst, []byte("valid"))
	if _, err := syscall.Write(fd, valid); err != nil {
		return err
	}
	fmt.Printf("sent %d forged\n", len(forged))
	select {}
}

// sniff holds tcp and udp port on addr alone and prints the destination of
// every TCP segment and UDP datagram to that port that reaches it.
func sniff(sock, iface string, addr netip.Addr, port string) error {
	p, _ := strconv.Atoi(port)
	sess, err := portd.Open(sock, portd.OpenRequest{Iface: iface, Addrs: []netip.Addr{addr},
		Ports: []portd.Port{{Proto: hostports.TCP, Port: uint16(p)}, {Proto: hostports.UDP, Port: uint16(p)}}})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	buf := make([]byte, 1<<17)
	for {
		n, err := syscall.Read(sess.FrameFd(), buf)
		if err != nil || n == 0 {
			return fmt.Errorf("reading frames: %v", err)
		}
		f := buf[10:n]
		if len(f) < 14+20+4 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
			continue
		}
		ip := f[14:]
		ihl := int(ip[0]&0x0f) * 4
		if (ip[9] != 6 && ip[9] != 17) || len(ip) < ihl+4 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			continue
		}
		if dport := binary.BigEndian.Uint16(ip[ihl+2:]); dport == uint16(p) {
			fmt.Printf("frame %s:%d\n", netip.AddrFrom4([4]byte(ip[16:20])), dport)
		}
	}
}
