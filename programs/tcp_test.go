package programs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func streamSize() int {
	if raceEnabled {
		return 2 << 20
	}
	return 16 << 20
}

// TestNetcatToHost: OpenBSD's nc under 'ustack run' connects to a listener
// on the host's loopback through 10.0.2.2, sends a file, half-closes (-N),
// and receives the host's reply until the host closes.
func TestNetcatToHost(t *testing.T) {
	nc := need(t, "nc.openbsd")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	sent := randomData(streamSize())
	if err := os.WriteFile(in, sent, 0o644); err != nil {
		t.Fatal(err)
	}
	reply := randomData(streamSize() / 2)
	port, got := hostSink(t, reply)
	script := fmt.Sprintf("%s -N 10.0.2.2 %d < %s > %s", nc, port, in, out)
	p := run(t, nil, "sh", "-c", script)
	if s := receive(t, got, 60*time.Second); s != sumLine(sent) {
		t.Fatalf("the host received %s; want %s", s, sumLine(sent))
	}
	p.mustSucceed(60 * time.Second)
	checkFile(t, out, sum(reply), len(reply))
}

// TestNetcatListenPublished: nc -l under 'ustack run', reached from the
// host through -p; data both ways.
func TestNetcatListenPublished(t *testing.T) {
	nc := need(t, "nc.openbsd")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	served := randomData(streamSize())
	if err := os.WriteFile(in, served, 0o644); err != nil {
		t.Fatal(err)
	}
	sent := randomData(streamSize() / 2)
	hostPort := freePort(t)
	// -N: send a FIN when the file is sent, so the host's read ends. nc
	// exits when its network input ends, so the host answers only then
	// (as it would have to with nc on the kernel).
	p := run(t, []string{"-p", fmt.Sprintf("127.0.0.1:%d:7000", hostPort)}, "sh", "-c", fmt.Sprintf("%s -N -l 7000 < %s > %s", nc, in, out))
	got := exchangeUntilUp(t, p, fmt.Sprintf("127.0.0.1:%d", hostPort), receiveThenSend(sent))
	if sum(got) != sum(served) {
		t.Fatalf("the host received %d bytes (sha256 %s); want %s", len(got), sum(got), sumLine(served))
	}
	p.mustSucceed(30 * time.Second)
	checkFile(t, out, sum(sent), len(sent))
}

// TestSocatRelay: socat under 'ustack run' relays a published port
// (TCP-LISTEN on the stack) to a server on the host (TCP:10.0.2.2:PORT):
// host -> published port -> stack -> socat -> stack -> nat -> host, with
// data both ways.
func TestSocatRelay(t *testing.T) {
	need(t, "socat")
	sent := randomData(streamSize())
	reply := randomData(streamSize())
	backend, got := hostSink(t, reply)
	hostPort := freePort(t)
	// -t 30: after the first direction ends, socat waits up to 30 s (not
	// the default 0.5 s) for the other, which the backend answers only
	// after the first has ended.
	p := run(t, []string{"-p", fmt.Sprintf("127.0.0.1:%d:7100", hostPort)},
		"socat", "-t", "30", "TCP-LISTEN:7100,reuseaddr", fmt.Sprintf("TCP:10.0.2.2:%d", backend))
	back := exchangeUntilUp(t, p, fmt.Sprintf("127.0.0.1:%d", hostPort), sendAndReceive(sent))
	if s := receive(t, got, 30*time.Second); s != sumLine(sent) {
		t.Fatalf("the backend received %s; want %s", s, sumLine(sent))
	}
	if sum(back) != sum(reply) {
		t.Fatalf("the host received %d bytes (sha256 %s) back; want %s", len(back), sum(back), sumLine(reply))
	}
	p.mustSucceed(30 * time.Second)
}
