package main

import (
	"fmt"
	"maps"
	"os"
	"testing"

	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
)

func TestMain(m *testing.M) {
	// Re-run inside the namespace, this binary is the kernel's server.
	if spec, ok := os.LookupEnv(serveEnv); ok {
		if err := serveKernel(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// TestShape runs a reduced matrix — netstack's reno (IW 1) and the Linux
// kernel's cubic with IW 1, three normal fetches and two under each attack
// — and holds each sender to the verdict the README's table gives it:
// vulnerable means an attacked fetch took fewer rounds of data than every
// normal one and the best attacked fetch was quicker than the best normal
// one; resistant means no attacked fetch took fewer rounds than every
// normal one. Rounds are whole RTTs at the sender, and a stall of the
// loaded machine only ever adds to a fetch, so the best fetches are
// compared. Every transfer's digest is checked (fetch), so an attack that
// lost data fails the test too.
func TestShape(t *testing.T) {
	testbin.EndToEnd(t)
	attacks := []Attack{Attacks[0], Attacks[1], Attacks[2], Attacks[4]} // normal, ack-division, dupack, optimistic-ack
	expect := map[string]map[string]bool{                               // sender -> attack -> vulnerable
		"netstack-reno-iw1": {"ack-division": false, "dupack": false, "optimistic-ack": true},
		"linux-cubic-iw1":   {"ack-division": false, "dupack": false, "optimistic-ack": true},
	}
	senders := []Sender{senderNamed(t, "netstack-reno-iw1")}
	var k *Kernel
	if os.Geteuid() != 0 {
		t.Log("the Linux kernel's rows need root (a network namespace and a tap): netstack's only")
	} else {
		var err error
		if k, err = StartKernel(testprog.Need(t, "ip")); err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		senders = append(senders, senderNamed(t, "linux-cubic-iw1"))
	}
	logf := func(r Result) {
		t.Logf("%s under %s: %.2f RTTs, %d rounds, %d ACKs injected", r.Sender, r.Attack, r.Completion, r.Rounds, r.Injected)
	}
	// Three normal fetches: a stall of the loaded machine can only add
	// rounds, and a resistant sender is judged against the best of them.
	dir := t.TempDir()
	m, err := RunMatrix(k, senders, attacks[:1], 3, dir, logf)
	if err != nil {
		t.Fatal(err)
	}
	attacked, err := RunMatrix(k, senders, attacks[1:], 2, dir, logf)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(m.Results, attacked.Results)
	for _, s := range senders {
		normal := m.Best(s.Name, "normal")
		for _, a := range attacks[1:] {
			vulnerable, ok := expect[s.Name][a.Name]
			if !ok {
				t.Fatalf("no expectation for %s under %s", s.Name, a.Name)
			}
			r := m.Best(s.Name, a.Name)
			faster, _ := m.Beat(s.Name, a.Name)
			switch {
			case vulnerable && (faster == 0 || r.Completion >= normal.Completion):
				t.Errorf("%s under %s: %d of 2 fetches took fewer rounds than every normal one, best %.2f RTTs against %.2f; the README says vulnerable",
					s.Name, a.Name, faster, r.Completion, normal.Completion)
			case !vulnerable && faster > 0:
				t.Errorf("%s under %s: %d of 2 fetches took fewer rounds than every normal one; the README says it resists",
					s.Name, a.Name, faster)
			}
		}
	}
}

// TestRounds: one round for the first flight and one per RTT the data
// took, to the nearest.
func TestRounds(t *testing.T) {
	for _, tc := range []struct {
		times []float64
		want  int
	}{
		{nil, 0},
		{[]float64{2.0}, 1},
		{[]float64{2.0, 2.01, 2.02, 3.0, 3.05, 3.3, 4.1}, 3},
		{[]float64{2.0, 2.35, 2.45}, 1},
		{[]float64{2.0, 2.55}, 2},
		{[]float64{2.0, 7.2}, 6},
	} {
		var a [][2]float64
		for _, x := range tc.times {
			a = append(a, [2]float64{x, 0})
		}
		if got := Rounds(a); got != tc.want {
			t.Errorf("Rounds(%v) = %d, want %d", tc.times, got, tc.want)
		}
	}
}

func senderNamed(t *testing.T, name string) Sender {
	t.Helper()
	for _, s := range Senders {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no sender %s", name)
	return Sender{}
}
