package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// TestPcapReplayKernelCapture captures, with tcpdump, what a kernel client
// sends to a kernel responder in a pair of namespaces (three pings and a
// UDP datagram), replays it into a stack that has the responder's
// address, and reads with tshark what the stack sent back: an echo reply
// for each request.
func TestPcapReplayKernelCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ip := testprog.Need(t, "ip")
	tcpdump := testprog.Need(t, "tcpdump")
	tshark := testprog.Need(t, "tshark")
	ping := testprog.Need(t, "ping")
	socat := testprog.Need(t, "socat")
	dir := t.TempDir()
	capture, out := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "out.pcap")

	client, responder := fmt.Sprintf("ustpc%dc", os.Getpid()), fmt.Sprintf("ustpc%dr", os.Getpid())
	for _, ns := range []string{client, responder} {
		mustRun(t, ip, "netns", "add", ns)
		t.Cleanup(func() { exec.Command(ip, "netns", "del", ns).Run() })
	}
	mustRun(t, ip, "-n", client, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", responder)
	mustRun(t, ip, "-n", client, "addr", "add", "10.77.0.1/24", "dev", "v0")
	mustRun(t, ip, "-n", responder, "addr", "add", "10.77.0.2/24", "dev", "v1")
	mustRun(t, ip, "-n", client, "link", "set", "v0", "up")
	mustRun(t, ip, "-n", responder, "link", "set", "v1", "up")

	// Only what arrives at the responder: that is what the stack stands in for.
	dump := exec.Command(ip, "netns", "exec", responder, tcpdump, "-i", "v1", "-Q", "in", "-U", "-w", capture)
	var dumpErr syncBuffer
	dump.Stderr = &dumpErr
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	dumpDone := make(chan error, 1)
	go func() { dumpDone <- dump.Wait() }()
	t.Cleanup(func() { dump.Process.Kill(); <-dumpDone })
	testwait.For(t, "tcpdump to listen", func() bool {
		select {
		case err := <-dumpDone:
			t.Fatalf("tcpdump exited: %v: %s", err, dumpErr.String())
		default:
		}
		return strings.Contains(dumpErr.String(), "listening on")
	})
	mustRun(t, ip, "netns", "exec", client, ping, "-c", "3", "-i", "0.2", "-W", "5", "10.77.0.2")
	udp := exec.Command(ip, "netns", "exec", client, socat, "-u", "-", "UDP:10.77.0.2:9")
	udp.Stdin = strings.NewReader("hello\n")
	if b, err := udp.CombinedOutput(); err != nil {
		t.Fatalf("socat: %v: %s", err, b)
	}
	testwait.ForNil(t, "tcpdump to write the UDP datagram", func() error {
		if got := testprog.TsharkFields(t, tshark, capture, "udp.dstport==9", "udp.dstport"); len(got) != 1 {
			return fmt.Errorf("datagrams in the capture: %q", got)
		}
		return nil
	})
	dump.Process.Signal(syscall.SIGINT)
	if err := <-dumpDone; err != nil {
		t.Fatalf("tcpdump: %v: %s", err, dumpErr.String())
	}
	dumpDone <- nil // for the cleanup
	requests := testprog.TsharkFields(t, tshark, capture, "icmp.type==8", "icmp.ident", "icmp.seq")
	if len(requests) != 3 {
		t.Fatalf("echo requests in the capture: %q, want 3", requests)
	}
	// The stack learns the client's MAC from its ARP request; without it
	// the stack's answers would wait on ARP replies that never come.
	if arp := testprog.TsharkFields(t, tshark, capture, "arp.opcode==1 && arp.src.proto_ipv4==10.77.0.1", "arp.dst.proto_ipv4"); len(arp) != 1 {
		t.Fatalf("ARP requests from the client in the capture: %q, want 1", arp)
	}

	d := startDaemon(t, t.TempDir(), "replay", "--net", "pcap:"+capture+",out="+out+",speed=max", "--ip", "10.77.0.2/24")
	testwait.For(t, "the daemon to report the end of the capture", func() bool {
		return strings.Contains(d.stderr.String(), "end of capture")
	})
	if s := d.stderr.String(); !strings.Contains(s, " 0 skipped; the link stays up") {
		t.Errorf("daemon log %q: want the end of capture with 0 skipped", s)
	}
	testwait.ForNil(t, "the stack's answers in "+out, func() error {
		replies := testprog.TsharkFields(t, tshark, out, "icmp.type==0 && ip.src==10.77.0.2 && ip.dst==10.77.0.1", "icmp.ident", "icmp.seq")
		if !slices.Equal(replies, requests) {
			all, _ := exec.Command(tshark, "-r", out).Output()
			return fmt.Errorf("echo replies %q, want %q; the stack sent:\n%s", replies, requests, all)
		}
		return nil
	})
}

func mustRun(t *testing.T, prog string, args ...string) {
	t.Helper()
	if b, err := exec.Command(prog, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", prog, strings.Join(args, " "), err, b)
	}
}

func TestPcapErrors(t *testing.T) {
	dir := t.TempDir()
	notPcap := filepath.Join(dir, "text.pcap")
	if err := os.WriteFile(notPcap, []byte("root:x:0:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pcap")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--net", "pcap:" + missing, "--ip", "10.9.0.2/24"}, "ustack: --net: pcap:" + missing + ": no such file (name an existing capture, e.g. one written by tcpdump -w)"},
		{[]string{"--net", "pcap:" + notPcap + ",speed=fast", "--ip", "10.9.0.2/24"}, `ustack: --net: "pcap:` + notPcap + `,speed=fast": speed=fast: want realtime, max or a positive factor such as 10`},
		{[]string{"--net", "pcap:" + notPcap, "--ip", "10.9.0.2/24"}, "ustack: --net: pcap:" + notPcap + ": not a pcap file"},
		{[]string{"--net", "pcap:" + notPcap}, "ustack: --ip: --net pcap needs the stack's own address"},
	} {
		r := runUstack(t, nil, append([]string{"daemon", "--name", "x"}, tc.args...)...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, tc.want) {
			t.Errorf("ustack daemon %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
}
