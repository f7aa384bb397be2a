package programs_test

// Programs using UDP sockets under 'ustack run': netcat both ways, dig and
// glibc's resolver over UDP.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testwait"
)

// TestNetcatUDPToHost: OpenBSD's 'nc -u' under 'ustack run' sends a
// datagram to a UDP socket on the host's loopback through 10.0.2.2 and
// prints the reply, which the host sends back to the datagram's source
// address. The kernel subtest is the control: the same nc straight to
// 127.0.0.1.
func TestNetcatUDPToHost(t *testing.T) {
	nc := need(t, "nc.openbsd")
	need(t, "sh")
	t.Run("ustack run", func(t *testing.T) {
		netcatUDPToHost(t, nc, "10.0.2.2", func(script string) *proc { return run(t, nil, "sh", "-c", script) })
	})
	t.Run("kernel", func(t *testing.T) {
		netcatUDPToHost(t, nc, "127.0.0.1", func(script string) *proc { return start(t, nil, "sh", "-c", script) })
	})
}

func netcatUDPToHost(t *testing.T, nc, host string, launch func(script string) *proc) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	token := fmt.Sprintf("token-%d", rand.Uint64())
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 2048)
		pc.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
		pc.WriteTo([]byte("reply "+string(buf[:n])), from)
	}()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	// -w 2: after stdin's end, wait 2 s idle for the reply, then exit.
	p := launch(fmt.Sprintf("echo %s | %s -u -w 2 %s %d", token, nc, host, port))
	code := p.wait(60 * time.Second)
	select {
	case s := <-got:
		if s != token+"\n" {
			t.Fatalf("the host received %q, want %q", s, token+"\n")
		}
	default:
		t.Fatalf("the host received no datagram; nc exited %d, stderr:\n%s", code, p.stderr.String())
	}
	if code != 0 || p.stdout.String() != "reply "+token+"\n" {
		t.Fatalf("nc exited %d and printed %q, want 0 and %q; stderr:\n%s", code, p.stdout.String(), "reply "+token+"\n", p.stderr.String())
	}
}

// TestNetcatUDPListenPublished: 'nc -u -l' under 'ustack run' on a port
// published with -p HOSTPORT:PORT/udp; the host sends a datagram to the
// host port (again until nc listens) and gets nc's stdin back as the reply.
// The kernel subtest is the control: the same nc listening on the host.
func TestNetcatUDPListenPublished(t *testing.T) {
	nc := need(t, "nc.openbsd")
	need(t, "sh")
	t.Run("ustack run", func(t *testing.T) {
		hostPort := freeUDPPort(t)
		netcatUDPListen(t, nc, hostPort, func(script string) *proc {
			return run(t, []string{"-p", fmt.Sprintf("127.0.0.1:%d:7001/udp", hostPort)}, "sh", "-c", script+" 7001")
		})
	})
	t.Run("kernel", func(t *testing.T) {
		port := freeUDPPort(t)
		netcatUDPListen(t, nc, port, func(script string) *proc {
			return start(t, nil, "sh", "-c", fmt.Sprintf("%s 127.0.0.1 %d", script, port))
		})
	})
}

// netcatUDPListen: launch runs the listener script of nc (the path of
// OpenBSD's) given, completed with its address, reachable from the host on
// hostPort.
func netcatUDPListen(t *testing.T, nc string, hostPort int, launch func(script string) *proc) {
	token := fmt.Sprintf("token-%d", rand.Uint64())
	// -W 1: exit after one datagram from the network.
	p := launch(fmt.Sprintf("echo reply-%s | %s -u -l -W 1", token, nc))
	c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", hostPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	var reply string
	// Until nc listens, the datagram is refused or lost: send again.
	testwait.ForNil(t, "nc to reply", func() error {
		select {
		case <-p.done:
			// nc exits once it has replied: the reply may be waiting
			// behind the error of an earlier datagram.
			for range 2 {
				c.SetReadDeadline(time.Now().Add(time.Second))
				if n, err := c.Read(buf); err == nil {
					reply = string(buf[:n])
					return nil
				}
			}
			t.Fatalf("%s exited (%v) before replying; stderr:\n%s", p.name, p.cmd.ProcessState, p.stderr.String())
		default:
		}
		if _, err := c.Write([]byte(token + "\n")); err != nil {
			return err // ECONNREFUSED from an earlier datagram's ICMP error
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		reply = string(buf[:n])
		return nil
	})
	if reply != "reply-"+token+"\n" {
		t.Fatalf("the host got %q back, want %q; stderr of %s:\n%s", reply, "reply-"+token+"\n", p.name, p.stderr.String())
	}
	p.mustSucceed(30 * time.Second)
	if !strings.HasPrefix(p.stdout.String(), token+"\n") {
		t.Fatalf("nc printed %q, want %q first", p.stdout.String(), token+"\n")
	}
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// TestDigUDP: dig's default transport, to the gateway address and to the
// stack's DNS address.
func TestDigUDP(t *testing.T) { testDig(t, false) }

// TestGetentUDP: glibc's resolver in its usual form (A and AAAA in
// parallel over one UDP socket, sendmmsg) through the stack's DNS address.
func TestGetentUDP(t *testing.T) { testGetent(t, "", "udp") }
