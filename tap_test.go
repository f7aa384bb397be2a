package ustack_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testpeer"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// tapNetns creates a stack on a new tap device and moves the tap's kernel
// side into a network namespace of the test's own, addressed 10.77.0.1/24
// (the stack is 10.77.0.2/24). It needs root and iproute2.
func tapNetns(t testing.TB) (*ustack.Stack, func(args ...string) *exec.Cmd) {
	t.Helper()
	return tapNetnsWith(t, "", 0)
}

// tapNetnsWith is tapNetns with the namespace's and tap's names tagged (so
// that two can exist at once) and Config.BusyPoll set.
func tapNetnsWith(t testing.TB, tag string, busyPoll time.Duration) (*ustack.Stack, func(args ...string) *exec.Cmd) {
	t.Helper()
	testbin.EndToEnd(t)
	if os.Geteuid() != 0 {
		t.Skip("tap tests need root (to create the tap and a network namespace)")
	}
	ipPath := testprog.Need(t, "ip")
	ns := tapNS(tag)
	dev := fmt.Sprintf("ustk%s%d", tag, os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipPath, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command(ipPath, "netns", "del", ns).Run() })
	s, err := ustack.New(ustack.Config{Net: ustack.Tap{Name: dev, Create: true}, BusyPoll: busyPoll,
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.2/24"), netip.MustParsePrefix("fd77::2/64")}, Logf: t.Logf})
	if err != nil {
		t.Fatalf("New on a tap: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	run("link", "set", dev, "netns", ns)
	run("-n", ns, "addr", "add", "10.77.0.1/24", "dev", dev)
	run("-n", ns, "-6", "addr", "add", "fd77::1/64", "dev", dev, "nodad")
	run("-n", ns, "link", "set", dev, "up")
	run("-n", ns, "link", "set", "lo", "up")
	inNS := func(args ...string) *exec.Cmd {
		return exec.Command(ipPath, append([]string{"netns", "exec", ns}, args...)...)
	}
	return s, inNS
}

// tapNS is the name of the namespace tapNetnsWith makes for tag.
func tapNS(tag string) string { return fmt.Sprintf("ustack-tap%s-%d", tag, os.Getpid()) }

// TestTapInterop: the stack on a tap talks to the Linux kernel's own stack
// in a namespace, both directions, with a real curl and python server.
func TestTapInterop(t *testing.T) {
	s, inNS := tapNetns(t)
	for _, prog := range []string{"curl", "python3", "sh", "sha256sum"} {
		testprog.Need(t, prog)
	}
	// A file served by each side, 16 MiB of a seeded stream.
	dir := t.TempDir()
	file := filepath.Join(dir, "blob")
	f, _ := os.Create(file)
	h := sha256.New()
	io.Copy(io.MultiWriter(f, h), stream(11, 16<<20))
	f.Close()
	want := hex.EncodeToString(h.Sum(nil))

	t.Run("ping kernel", func(t *testing.T) { testPing(t, s, "icmp", "10.77.0.1") })
	t.Run("ping kernel ipv6", func(t *testing.T) { testPing(t, s, "icmp6", "fd77::1") })
	t.Run("kernel curl fetches from stack over ipv6", func(t *testing.T) {
		ln, err := s.Listen("tcp6", "[fd77::2]:8081")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
		go srv.Serve(ln)
		defer srv.Close()
		out, err := inNS("sh", "-c", "curl -sS --max-time 30 'http://[fd77::2]:8081/blob' | sha256sum").CombinedOutput()
		if got := strings.Fields(string(out)); err != nil || len(got) == 0 || got[0] != want {
			t.Fatalf("curl over IPv6: %v: %s", err, out)
		}
	})

	t.Run("stack fetches from kernel", func(t *testing.T) {
		srv := inNS("python3", "-m", "http.server", "--bind", "10.77.0.1", "8000", "-d", dir)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { srv.Process.Kill(); srv.Wait() }()
		client := &http.Client{Transport: &http.Transport{DialContext: s.DialContext}, Timeout: 30 * time.Second}
		// Until python listens, the kernel refuses the connection.
		var resp *http.Response
		testwait.ForNil(t, "GET from the kernel's python server", func() (err error) {
			resp, err = client.Get("http://10.77.0.1:8000/blob")
			return err
		})
		defer resp.Body.Close()
		got := sha256.New()
		io.Copy(got, resp.Body)
		if hex.EncodeToString(got.Sum(nil)) != want {
			t.Fatal("body SHA-256 differs from the file's")
		}
	})

	t.Run("kernel curl fetches from stack", func(t *testing.T) {
		ln, err := s.Listen("tcp", ":8080")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
		go srv.Serve(ln)
		defer srv.Close()
		out, err := inNS("sh", "-c", "curl -sS --max-time 30 http://10.77.0.2:8080/blob | sha256sum").CombinedOutput()
		if err != nil {
			t.Fatalf("curl in the namespace: %v: %s", err, out)
		}
		if got := strings.Fields(string(out)); len(got) == 0 || got[0] != want {
			t.Fatalf("curl's SHA-256 %q, want %s", out, want)
		}
	})
}

// TestTapErrors: a missing tap names --net and says how to make one.
func TestTapErrors(t *testing.T) {
	_, err := ustack.New(ustack.Config{Net: ustack.Tap{Name: "ustk-missing0"}, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.2/24")}})
	var ce *ustack.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Net" || !strings.Contains(err.Error(), "ip tuntap add") {
		t.Fatalf("missing tap: %v, want a Net error with the ip tuntap hint", err)
	}
	_, err = ustack.New(ustack.Config{Net: ustack.Tap{Name: "x"}})
	if !errors.As(err, &ce) || ce.Field != "Addrs" {
		t.Fatalf("tap without addresses: %v, want an Addrs error", err)
	}
	_, err = ustack.New(ustack.Config{Net: ustack.Tap{}, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.2/24")}})
	if !errors.As(err, &ce) || ce.Field != "Tap.Name" {
		t.Fatalf("tap without a name: %v, want a Tap.Name error", err)
	}
}

// TestTapBadFrames: truncated, oversized, bad-checksum and garbage-fragment
// frames injected from the kernel side are counted and dropped while a
// transfer on the same stack goes on intact.
func TestTapBadFrames(t *testing.T) {
	s, _ := tapNetns(t)
	csumErrs, malformed := badFramesDuringTransfer(t, s, tapNS(""), fmt.Sprintf("ustk%d", os.Getpid()%100000), "10.77.0.2")
	if malformed == 0 {
		t.Error("no malformed IP packets or fragments counted")
	}
	if csumErrs == 0 {
		t.Error("no TCP checksum errors counted")
	}
}

// badFramesDuringTransfer has the kernel in namespace ns stream 64 MiB to a
// listener of s on dst:8080 while bad frames (see injectBadFrames) go out
// of the kernel's dev to dst. The transfer must arrive intact; it returns
// how many TCP checksum errors and malformed IP packets or fragments the
// stack counted meanwhile.
func badFramesDuringTransfer(t *testing.T, s *ustack.Stack, ns, dev, dst string) (csumErrs, malformed uint64) {
	t.Helper()
	ln, err := s.Listen("tcp", dst+":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		h := newHashingWriter()
		io.Copy(h, c)
		c.Close()
		got <- h.Sum()
	}()
	stats := s.Netstack().Stats()
	malformedNow := func() uint64 {
		return stats.IP.MalformedPacketsReceived.Value() + stats.IP.MalformedFragmentsReceived.Value()
	}
	csumBefore, malformedBefore := stats.TCP.ChecksumErrors.Value(), malformedNow()

	const n = 64 << 20
	client := testpeer.CommandIn(ns, "rawsend", dst+":8080", strconv.Itoa(n))
	inject := testpeer.CommandIn(ns, "inject", dev, dst)
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := inject.CombinedOutput(); err != nil {
		t.Fatalf("injecting: %v: %s", err, out)
	}
	if err := client.Wait(); err != nil {
		t.Fatalf("kernel client: %v", err)
	}
	want := newHashingWriter()
	io.Copy(want, stream(3, n))
	select {
	case sum := <-got:
		if sum != want.Sum() {
			t.Fatal("the transfer was damaged while bad frames arrived")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the transfer did not finish")
	}
	return stats.TCP.ChecksumErrors.Value() - csumBefore, malformedNow() - malformedBefore
}
