package main

import (
	"fmt"
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

// TestShape runs a reduced matrix — netstack's reno (IW 10) and the Linux
// kernel's cubic with IW 1 — and holds each sender to the verdict the
// README's table gives it: vulnerable means the attacked transfer took
// fewer flights of data than the normal one and finished sooner; not
// vulnerable means it took no fewer flights. Flights are counted in the
// receiver's capture, so the verdicts do not depend on the machine's load;
// the digest of every transfer is checked (fetch), so an attack that made
// the transfer lose data fails too.
func TestShape(t *testing.T) {
	testbin.EndToEnd(t)
	attacks := []Attack{Attacks[0], Attacks[1], Attacks[3], Attacks[4]} // normal, ack-division, dupack-nosack, optimistic-ack
	expect := map[string]map[string]bool{                               // sender -> attack -> vulnerable
		"netstack-reno":   {"ack-division": false, "dupack-nosack": false, "optimistic-ack": true},
		"linux-cubic-iw1": {"ack-division": false, "dupack-nosack": false, "optimistic-ack": true},
	}
	senders := []Sender{Senders[0]}
	var k *Kernel
	if os.Geteuid() != 0 {
		t.Log("the Linux kernel's rows need root (a network namespace and a tap): netstack's only")
	} else {
		var err error
		if k, err = StartKernel(testprog.Need(t, "ip")); err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		senders = append(senders, Senders[3])
	}
	for _, a := range attacks {
		if _, ok := expect[senders[0].Name][a.Name]; !ok && a.Name != "normal" {
			t.Fatalf("no expectation for %s", a.Name)
		}
	}
	m, err := RunMatrix(k, senders, attacks, t.TempDir(), func(r Result) {
		t.Logf("%s under %s: %.2f RTTs, %d flights, %d ACKs injected", r.Sender, r.Attack, r.Completion, r.Flights, r.Injected)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range senders {
		normal := m.Results[[2]string{s.Name, "normal"}]
		for _, a := range attacks[1:] {
			r := m.Results[[2]string{s.Name, a.Name}]
			vulnerable := expect[s.Name][a.Name]
			switch {
			case vulnerable && (r.Flights >= normal.Flights || r.Completion >= normal.Completion):
				t.Errorf("%s under %s: %d flights in %.2f RTTs, want fewer than the normal %d in %.2f (the README says vulnerable)",
					s.Name, a.Name, r.Flights, r.Completion, normal.Flights, normal.Completion)
			case !vulnerable && r.Flights < normal.Flights:
				t.Errorf("%s under %s: %d flights, want no fewer than the normal %d (the README says it resists)",
					s.Name, a.Name, r.Flights, normal.Flights)
			}
			if got, want := m.Verdict(s.Name, a.Name) == "vulnerable", vulnerable; got != want {
				t.Errorf("%s under %s: table says %q", s.Name, a.Name, m.Verdict(s.Name, a.Name))
			}
		}
	}
}

// TestFlights: trains of arrivals separated by less than flightGap are one
// flight.
func TestFlights(t *testing.T) {
	for _, tc := range []struct {
		times []float64
		want  int
	}{
		{nil, 0},
		{[]float64{2.0}, 1},
		{[]float64{2.0, 2.01, 2.02, 3.0, 3.05, 3.3, 4.1}, 3},
		{[]float64{2.0, 2.35, 2.7, 3.05}, 1},
	} {
		var a [][2]float64
		for _, x := range tc.times {
			a = append(a, [2]float64{x, 0})
		}
		if got := Flights(a); got != tc.want {
			t.Errorf("Flights(%v) = %d, want %d", tc.times, got, tc.want)
		}
	}
}
