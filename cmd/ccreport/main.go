// Command ccreport compares ustack's congestion control algorithms on one
// emulated dumbbell and writes the comparison as Markdown with plots
// (package cc/report):
//
//	go run ./cmd/ccreport                 # every algorithm, docs/cc-report.md and docs/cc-report/
//	go run ./cmd/ccreport -quick -cc reno,bbr -out /tmp/r
//
// It is a program of its own, not a ustack subcommand: it works on no
// running stack, takes many minutes, and writes a document for the
// repository.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/ustack/ustack/cc"
	"github.com/ustack/ustack/cc/report"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("ccreport", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "a smoke test: two conditions, 4 s per run")
	algs := fs.String("cc", "", "comma-separated algorithms (default: every one package cc registers)")
	out := fs.String("out", "docs", "directory for cc-report.md and the cc-report/ plots")
	parallel := fs.Int("parallel", 0, "runs at once (default 6)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ccreport: unexpected argument %q (flags only; see -h)\n", fs.Arg(0))
		return 2
	}
	o := report.Full()
	if *quick {
		o = report.Quick()
	}
	if *algs != "" {
		for _, a := range strings.Split(*algs, ",") {
			if err := cc.Check(a); err != nil {
				fmt.Fprintf(os.Stderr, "ccreport: -cc: %v\n", err)
				return 2
			}
			o.Algorithms = append(o.Algorithms, a)
		}
	}
	if *parallel < 0 {
		fmt.Fprintln(os.Stderr, "ccreport: -parallel must be at least 1")
		return 2
	}
	if *parallel > 0 {
		o.Parallel = *parallel
	}
	o.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := report.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ccreport: %v\n", err)
		return 1
	}
	plots, err := r.Plot(filepath.Join(*out, "cc-report"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "ccreport: %v\n", err)
		return 1
	}
	md := filepath.Join(*out, "cc-report.md")
	if err := os.WriteFile(md, []byte(r.Markdown(plots)), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "ccreport: %v\n", err)
		return 1
	}
	fmt.Printf("wrote %s and %d plots in %v\n", md, len(plots), r.Took.Round(1e9))
	return 0
}
