package hostports

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

func TestTablePid(t *testing.T) {
	for name, want := range map[string]int{"ustack_123": 123, "ustack_": 0, "ustack_x": 0, "other_5": 0, "ustack_-4": 0,
		"ustack_portd_77_3": 77, "ustack_portd_77": 0, "ustack_portd_77_x": 0, "ustack_portd__3": 0} {
		pid, ok := tablePid(name)
		if ok != (want != 0) || pid != want && want != 0 {
			t.Errorf("tablePid(%q) = %d, %v; want %d", name, pid, ok, want)
		}
	}
}

// TestReservation: reserved ports (on the loopback address, touching no
// interface) cannot be bound by anyone else until released.
func TestReservation(t *testing.T) {
	r := NewReservation([]netip.Addr{netip.MustParseAddr("127.0.0.1")})
	first, err := r.ReserveBlock(8)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.Ports(TCP)); got != 8 {
		t.Fatalf("%d TCP ports reserved, want 8", got)
	}
	for _, p := range []uint16{first, first + 7} {
		if _, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("binding reserved TCP port %d: %v, want EADDRINUSE", p, err)
		}
		if _, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p)); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("binding reserved UDP port %d: %v, want EADDRINUSE", p, err)
		}
	}
	// A port the host holds cannot be reserved.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := uint16(l.Addr().(*net.TCPAddr).Port)
	if err := r.Reserve(TCP, held); !IsInUse(err) {
		t.Errorf("reserving a port the host holds: %v, want EADDRINUSE", err)
	}
	if r.Has(TCP, held) {
		t.Error("a failed reservation is listed")
	}
	// A released port is the host's again; the others stay held.
	r.Release(UDP, first)
	if r.Has(UDP, first) || !r.Has(TCP, first) {
		t.Errorf("after releasing UDP port %d: held udp %v, tcp %v; want tcp only", first, r.Has(UDP, first), r.Has(TCP, first))
	}
	if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", first)); err != nil {
		t.Errorf("binding released UDP port %d: %v", first, err)
	} else {
		c.Close()
	}
	if _, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("binding TCP port %d after releasing its UDP twin: %v, want EADDRINUSE", first, err)
	}
	r.Release(UDP, first) // not held: nothing happens
	r.Close()
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first)); err != nil {
		t.Errorf("port %d after Close: %v", first, err)
	} else {
		l.Close()
	}
}

// TestTableDiesWithOwner: the table goes the moment the socket that made it
// closes, as it does when its process is killed with SIGKILL; before, the
// table outlived the process and went on dropping its peers' packets until
// the next ustack start removed it.
func TestTableDiesWithOwner(t *testing.T) {
	name, f := testTable(t, "owner")
	if ok, err := TableExists(name); err != nil || !ok {
		t.Fatalf("table %s: exists=%v (%v), want it installed", name, ok, err)
	}
	if f2, err := NewFirewallTable(name, "lo", nil); err == nil {
		f2.Close()
		t.Error("a second table of the same name: no error, want the kernel's EEXIST")
	}
	if ok, err := TableExists(name); err != nil || !ok {
		t.Fatalf("table %s after a failed second one: exists=%v (%v), want it still installed", name, ok, err)
	}
	f.conn.CloseLasting() // what the kernel does with the sockets of a killed process
	if ok, err := TableExists(name); err != nil || ok {
		t.Errorf("table %s once its socket closed: exists=%v (%v), want it gone", name, ok, err)
	}
}

// TestFirewallManyPorts: a block of thousands of ports goes into the drop
// set whole and comes out whole (in one batch the kernel's reply
// overflowed: ERANGE).
func TestFirewallManyPorts(t *testing.T) {
	_, f := testTable(t, "many")
	defer f.Close()
	var ports []uint16
	for p := range uint16(4096) {
		ports = append(ports, 40000+p)
	}
	if err := f.Add(TCP, ports...); err != nil {
		t.Fatalf("adding %d ports: %v", len(ports), err)
	}
	got, err := f.Ports(TCP)
	if err != nil || len(got) != len(ports) {
		t.Fatalf("the drop set holds %d ports (%v), want %d", len(got), err, len(ports))
	}
	if err := f.Remove(TCP, ports[:3000]...); err != nil {
		t.Fatalf("removing 3000 ports: %v", err)
	}
	if got, err := f.Ports(TCP); err != nil || len(got) != len(ports)-3000 {
		t.Errorf("after removing 3000: %d ports (%v), want %d", len(got), err, len(ports)-3000)
	}
}

// testTable installs a firewall table of this test process on lo for
// 127.0.0.1, named after what, or skips without root or nftables.
func testTable(t *testing.T, what string) (string, *Firewall) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nftables tables need root")
	}
	name := fmt.Sprintf("%s%d_%s_test", TablePrefix, os.Getpid(), what)
	f, err := NewFirewallTable(name, "lo", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Skip("nftables: ", err)
	}
	return name, f
}
