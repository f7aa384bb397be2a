// Package semantics holds ustack to Linux: each scenario of the probe
// program runs once on the kernel's stack and once under `ustack run`, and
// what the program observed must be the same.
package semantics

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

var ustackBin, probeBin string

func TestMain(m *testing.M) {
	testbin.Run("ustack-semantics", false, map[string]string{"probe": "github.com/ustack/ustack/semantics/probe"},
		func(ustack string, bins map[string]string) { ustackBin, probeBin = ustack, bins["probe"] }, m.Run)
}

// run runs a command and returns what it printed on stdout; stderr (where
// ustack logs) is shown only when something goes wrong.
func run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill(); close(done) })
	defer timer.Stop()
	out, err := cmd.Output()
	select {
	case <-done:
		t.Fatalf("%s: still running after 30 s; output so far:\n%s%s", strings.Join(args, " "), out, stderr.String())
	default:
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("%s said on stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	return string(out)
}

func TestLinuxSemantics(t *testing.T) {
	if err := intercept.CheckKernel(); err != nil {
		t.Skipf("this kernel cannot run programs under ustack: %v", err)
	}
	for _, scenario := range []string{"names", "connect-nonblock", "refused", "halfclose", "sockopts", "badargs", "dualstack",
		"udp", "udp-mmsg", "udp-blocking", "udp-badargs", "udp-sockopts", "udp-cmsg", "ping",
		"tcpinfo", "linger", "backlog", "bind-unspec", "sockopt-levels", "msg-oob", "msg-control", "msg-namelen",
		"shutdown", "close-connect", "sendto-connected", "quickack"} {
		t.Run(scenario, func(t *testing.T) {
			var kernel string
			if scenario == "ping" {
				kernel = kernelPing(t)
			} else {
				kernel = run(t, probeBin, scenario)
			}
			user := run(t, ustackBin, "run", "--", probeBin, scenario)
			if kernel != user {
				t.Errorf("the program saw different things.\non the kernel:\n%s\nunder ustack:\n%s", kernel, user)
			}
		})
	}
}

// TestUnreachableAndTimeout: connects that fail for want of a route
// (ENETUNREACH, EHOSTUNREACH) or of an answer (ETIMEDOUT, with TCP_SYNCNT).
// Both runs happen in a network namespace of the test's own with only
// loopback, a route of type unreachable, and a tun device nobody reads, so
// no packet leaves the machine; under ustack the nat gateway meets the
// same routes when it dials.
func TestUnreachableAndTimeout(t *testing.T) {
	if err := intercept.CheckKernel(); err != nil {
		t.Skipf("this kernel cannot run programs under ustack: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace with routes of its own)")
	}
	for _, prog := range []string{"unshare", "ip", "sh"} {
		testprog.Need(t, prog)
	}
	const setup = "ip link set lo up && ip route add unreachable 198.51.100.0/24 && " +
		"ip tuntap add t0 mode tun && ip link set t0 up && ip addr add 203.0.113.1/24 dev t0 && exec "
	for _, scenario := range []string{"unreachable", "timeout"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			kernel := run(t, "unshare", "-n", "sh", "-c", setup+probeBin+" "+scenario)
			user := run(t, "unshare", "-n", "sh", "-c", setup+ustackBin+" run -- "+probeBin+" "+scenario)
			if kernel != user {
				t.Errorf("the program saw different things.\non the kernel:\n%s\nunder ustack:\n%s", kernel, user)
			}
		})
	}
}

// kernelPing runs the ping scenario on the kernel in a network namespace of
// its own, where ping sockets may be opened by everyone (as ustack allows:
// the host's net.ipv4.ping_group_range is left alone).
func kernelPing(t *testing.T) string {
	if os.Geteuid() != 0 {
		t.Skip("comparing ping sockets with the kernel needs root (a network namespace)")
	}
	for _, prog := range []string{"unshare", "ip", "sysctl", "sh"} {
		testprog.Need(t, prog)
	}
	return run(t, "unshare", "-n", "sh", "-c",
		"ip link set lo up && sysctl -q -w net.ipv4.ping_group_range='0 2147483647' && exec "+probeBin+" ping")
}

// TestConnectEINTR: a blocking connect that a signal without SA_RESTART
// interrupts fails with EINTR, on the kernel and under ustack (a C program:
// Go's runtime installs its handlers with SA_RESTART). The listener it
// connects to has a full queue, so the kernel drops the SYNs and the
// connect waits; under ustack the nat gateway's own connect to it waits.
func TestConnectEINTR(t *testing.T) {
	if err := intercept.CheckKernel(); err != nil {
		t.Skipf("this kernel cannot run programs under ustack: %v", err)
	}
	// The EINTR probe is a C program.
	cc := testprog.Need(t, "gcc")
	bin := filepath.Join(t.TempDir(), "eintr")
	if out, err := exec.Command(cc, "-O2", "-o", bin, "testdata/eintr.c").CombinedOutput(); err != nil {
		t.Fatalf("building the EINTR probe: %v\n%s", err, out)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := fmt.Sprint(sa.(*unix.SockaddrInet4).Port)
	// Fill the queue, so that later SYNs are dropped.
	for i := 0; i < 2; i++ {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(c)
		unix.Connect(c, sa)
	}
	// For a listener, TCP_INFO's unacked is the accept queue's length and
	// sacked its limit; past the limit the queue is full.
	testwait.ForNil(t, "the accept queue to fill", func() error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			t.Fatal(err)
		}
		if info.Unacked <= info.Sacked {
			return fmt.Errorf("%d connections queued, room for %d", info.Unacked, info.Sacked)
		}
		return nil
	})
	kernel := run(t, bin, "127.0.0.1", port)
	user := run(t, ustackBin, "run", "--", bin, "10.0.2.2", port)
	if !strings.Contains(kernel, "connect: EINTR after about 1 s: yes") {
		t.Fatalf("on the kernel the probe saw:\n%s(the test's premise, a connect that waits, does not hold here)", kernel)
	}
	if kernel != user {
		t.Errorf("the program saw different things.\non the kernel:\n%s\nunder ustack:\n%s", kernel, user)
	}
}
