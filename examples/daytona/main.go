// Command daytona reproduces Savage, Cardwell, Wetherall and Anderson,
// "TCP Congestion Control with a Misbehaving Receiver" (ACM CCR 29(5),
// 1999): a receiver fetches a 60 KB object over a 10 Mbit/s link with a
// 100 ms round trip, normally and under each of the paper's three attacks
// (ACK division, DupACK spoofing, optimistic ACKing), from netstack's TCP
// on a user-level stack (reno and cubic) and from the Linux kernel in a
// network namespace (reno and cubic, initial window 1 and 10). It writes
// the completion times, the vulnerability table and time-sequence plots
// into results/:
//
//	sudo go run ./examples/daytona              # from the repository's root
//	sudo go run ./examples/daytona -o /tmp/out
//
// The kernel's rows need root (a namespace and a tap) and iproute2;
// without them only netstack's rows are run, and the table says so.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Attacks are the paper's three, with the strength used here, and the
// normal transfer first. DupACK spoofing is tried with SACK offered and
// without: a receiver chooses whether to offer it, and a sender counts
// duplicate ACKs differently with it.
var Attacks = []Attack{
	{Name: "normal"},
	{Name: "ack-division", Rule: "ack-division=4"},
	{Name: "dupack", Rule: "dupack=20"},
	{Name: "dupack-nosack", Rule: "dupack=20", NoSACK: true},
	{Name: "optimistic-ack", Rule: "optimistic-ack=64"},
}

// Senders are the servers. netstack's initial window is tcp.initial_cwnd
// (netstack patch 0004; the pinned netstack has only the constant 10),
// Linux's the route's initcwnd.
var Senders = []Sender{
	{Name: "netstack-reno-iw1", CC: "reno", IW: 1},
	{Name: "netstack-cubic-iw1", CC: "cubic", IW: 1},
	{Name: "netstack-reno-iw10", CC: "reno", IW: 10},
	{Name: "netstack-cubic-iw10", CC: "cubic", IW: 10},
	{Name: "linux-reno-iw1", Kernel: true, CC: "reno", IW: 1},
	{Name: "linux-cubic-iw1", Kernel: true, CC: "cubic", IW: 1},
	{Name: "linux-reno-iw10", Kernel: true, CC: "reno", IW: 10},
	{Name: "linux-cubic-iw10", Kernel: true, CC: "cubic", IW: 10},
}

func main() {
	if spec, ok := os.LookupEnv(serveEnv); ok {
		if err := serveKernel(spec); err != nil {
			fmt.Fprintln(os.Stderr, "daytona:", err)
			os.Exit(1)
		}
		return
	}
	out := flag.String("o", filepath.Join("examples", "daytona", "results"), "directory for the table, plots and captures")
	runs := flag.Int("n", 3, "fetches per sender and attack")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "daytona: unexpected argument %q (the flags are -o DIR and -n RUNS)\n", flag.Arg(0))
		os.Exit(2)
	}
	if *runs < 1 {
		fmt.Fprintf(os.Stderr, "daytona: -n %d: give at least 1 run\n", *runs)
		os.Exit(2)
	}
	if err := run(*out, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "daytona:", err)
		os.Exit(1)
	}
}

func run(out string, runs int) error {
	if err := os.MkdirAll(filepath.Join(out, "pcap"), 0o755); err != nil {
		return err
	}
	senders := Senders
	note := ""
	k, why := kernel()
	if k == nil {
		note = "The Linux kernel's rows were not run: " + why + "."
		senders = nil
		for _, s := range Senders {
			if !s.Kernel {
				senders = append(senders, s)
			}
		}
		fmt.Fprintln(os.Stderr, "daytona:", note)
	} else {
		defer k.Close()
	}
	m, err := RunMatrix(k, senders, Attacks, runs, filepath.Join(out, "pcap"), func(r Result) {
		fmt.Printf("%-18s %-15s %5.2f RTTs, %d rounds (%d ACKs injected)\n", r.Sender, r.Attack, r.Completion, r.Rounds, r.Injected)
	})
	if err != nil {
		return err
	}
	for _, s := range senders {
		if err := PlotSender(m, s.Name, filepath.Join(out, s.Name+".png")); err != nil {
			return err
		}
	}
	table := m.Markdown(note)
	if err := os.WriteFile(filepath.Join(out, "table.md"), []byte(table), 0o644); err != nil {
		return err
	}
	fmt.Print("\n", table)
	return nil
}

// kernel starts the namespace's server, or says why it cannot.
func kernel() (*Kernel, string) {
	if os.Geteuid() != 0 {
		return nil, "they need root (a network namespace and a tap)"
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, "iproute2's ip is not installed"
	}
	k, err := StartKernel(ip)
	if err != nil {
		return nil, err.Error()
	}
	return k, ""
}
