package drill

import (
	"strings"
	"testing"
	"time"
)

func TestParseEvents(t *testing.T) {
	s, err := Parse("t.pkt", `--tolerance_usecs=10000
--ip_version=ipv4-mapped-ipv6
// a comment
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0
+.1 < S 0:0(0) win 32792 <mss 1000,sackOK,TS val 100 ecr 0,nop,wscale 7>
0.200 > S. 0:0(0) ack 1 <...>
+0...0.3 accept(3, ..., ...) = 4
+0.1~+0.2 > P. 1:1001(1000) ack 1 win 257 <nop,nop,sack 1:2 3:4>
* > F. 1001:1001(0) ack 1
+0  connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0  < udp 5000>8080 (10)
+0  < icmp unreachable frag_needed mtu 1000 [1:1001(1000)]
+0  getsockopt(3, SOL_TCP, TCP_INFO, {tcpi_state=TCP_ESTABLISHED, tcpi_snd_cwnd=10}, ...) = 0
+0  poll([{fd=3, events=POLLIN|POLLOUT, revents=POLLOUT}], 1, 0) = 1
+0  `+"`sysctl -q net.ipv4.tcp_sack=0`"+`
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Options) != 2 || s.Options[1].Value != "ipv4-mapped-ipv6" {
		t.Errorf("options: %+v", s.Options)
	}
	e := s.Events
	if len(e) != 13 {
		t.Fatalf("%d events, want 13", len(e))
	}
	if e[0].Line != 4 || e[0].Syscall.Name != "socket" || e[0].Syscall.Result.Int != 3 {
		t.Errorf("event 0: %+v %+v", e[0], e[0].Syscall)
	}
	if l := e[1].Syscall.Args[3]; l.Tag != "linger" || l.Fields["onoff"].Int != 1 {
		t.Errorf("linger: %s", l)
	}
	syn := e[2].Packet
	if e[2].Time != RelativeTime || e[2].Usecs != 100000 || syn.Dir != Inbound || syn.Flags != "S" || syn.Win != 32792 || len(syn.Options) != 5 {
		t.Errorf("SYN: %+v", syn)
	}
	if o := syn.Options[2]; o.Kind != OptTimestamp || o.TSVal != 100 {
		t.Errorf("TS option: %+v", o)
	}
	if e[3].Time != AbsoluteTime || e[3].Usecs != 200000 || !e[3].Packet.AnyOptions || e[3].Packet.Flags != "S." {
		t.Errorf("SYN-ACK: %+v", e[3].Packet)
	}
	if a := e[4].Syscall; !a.Blocking || a.EndUsecs != 300000 {
		t.Errorf("blocking accept: %+v", a)
	}
	if e[5].Time != RelativeRangeTime || e[5].EndUsecs != 200000 || len(e[5].Packet.Options[2].SACK) != 2 {
		t.Errorf("range: %+v", e[5])
	}
	if e[6].Time != AnyTime {
		t.Errorf("any time: %+v", e[6])
	}
	if c := e[7].Syscall; c.Errno != "EINPROGRESS" || c.Note != "Operation now in progress" || c.Result.Int != -1 {
		t.Errorf("errno: %+v", c)
	}
	if u := e[8].Packet; u.Proto != UDP || u.SrcPort != 5000 || u.DstPort != 8080 || u.PayloadLen != 10 {
		t.Errorf("udp: %+v", u)
	}
	if i := e[9].Packet; i.Proto != ICMP || i.ICMPCode != "frag_needed" || i.MTU != 1000 || i.EchoedLen != 1000 {
		t.Errorf("icmp: %+v", i)
	}
	if g := e[10].Syscall.Args[3]; g.Tag != "list" || g.Fields["tcpi_snd_cwnd"].Int != 10 {
		t.Errorf("tcp_info: %s", g)
	}
	if p := e[11].Syscall.Args[0].List[0]; p.Tag != "pollfd" || p.Fields["events"].Kind != ExprBinary {
		t.Errorf("pollfd: %s", p)
	}
	if e[12].Command == nil || e[12].Command.Text != "sysctl -q net.ipv4.tcp_sack=0" {
		t.Errorf("command: %+v", e[12])
	}
}

// TestParseErrors: what packetdrill refuses is refused with the line and a
// reason.
func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"0 < S 0:0(0) <mss 1000>", ":1: semantic error: window must be specified for inbound packets"},
		{"0 < S 0:0(0) win 10 <mss 1000,nop>", "TCP options are not padded correctly"},
		{"0 > S. 0:10(0) ack 1", "inconsistent TCP sequence numbers and payload size"},
		{"+0.2~+0.1 > S. 0:0(0) ack 1", "time range is backwards"},
		{"* write(3, ..., 10) = 10", "event time <star> can only be used with outbound packets"},
		{"0 < S 0:0(0) win 10 <...>", "<...> for TCP options can only be used with outbound packets"},
		{"0 < gre: S 0:0(0) win 10", "gre encapsulation is not supported"},
		{"0 < S 0:0(0) win 10 <md6 1>", "unknown TCP option"},
		{"0 < X 0:0(0) win 10", "Invalid TCP flag: 'X'"},
		{"0 < S 0:0(0) win 70000", "TCP window value 70000 out of range"},
		{"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3 EFOO", "expected '(' and a note after errno EFOO"},
		{"// nothing", "the script has no events"},
		{"0 < S 0:0(0) win 10 {mut tcp mss}", "packet mutation"},
	} {
		_, err := Parse("t.pkt", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error with %q", c.src, err, c.want)
		}
	}
}

func TestDirectives(t *testing.T) {
	s, err := Parse("t.pkt", "// ustack: known difference: one reason\n// drill: kernel only: needs a qdisc\n0 close(3) = 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.KnownDifferences) != 1 || s.KnownDifferences[0] != "one reason" || s.KernelOnly != "needs a qdisc" {
		t.Errorf("directives: %q %q", s.KnownDifferences, s.KernelOnly)
	}
}

func TestSysctlCommand(t *testing.T) {
	got, err := sysctlCommand(`sysctl -q net.ipv4.tcp_sack=0 && sysctl -w net.ipv4.tcp_rmem="4096 131072 6291456"; echo 0 > /proc/sys/net/ipv4/tcp_recovery`)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"net.ipv4.tcp_sack", "0"}, {"net.ipv4.tcp_rmem", "4096 131072 6291456"}, {"net.ipv4.tcp_recovery", "0"}}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("setting %d: got %q, want %q", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"tc qdisc add dev tun0 root netem delay 10ms", "sysctl net.ipv4.tcp_sack", "sysctl -a"} {
		if _, err := sysctlCommand(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestVirtualClockOrder: timers fire in deadline order, and in the order
// they were set for equal deadlines, each at its own time.
func TestVirtualClockOrder(t *testing.T) {
	c := newVirtualClock()
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+c.elapsed().String()) }
	}
	c.AfterFunc(2*time.Second, at("b"))
	c.AfterFunc(time.Second, at("a1"))
	c.AfterFunc(time.Second, at("a2"))
	stopped := c.AfterFunc(time.Second, at("never"))
	if !stopped.Stop() {
		t.Fatal("Stop of an armed timer reported false")
	}
	re := c.AfterFunc(time.Second, at("reset"))
	re.Reset(3 * time.Second)
	for {
		d, ok := c.nextDeadline()
		if !ok {
			break
		}
		c.setNow(d)
		for c.fireOne() {
		}
	}
	want := "a1@1s a2@1s b@2s reset@3s"
	if s := strings.Join(got, " "); s != want {
		t.Errorf("fired %s, want %s", s, want)
	}
}
