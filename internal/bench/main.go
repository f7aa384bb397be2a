// Command bench measures programs under `ustack run` beside the kernel,
// slirp4netns and pasta, and the tap and host attachments against the kernel
// in a network namespace, and writes the figures into BENCHMARKS.md.
//
// It is repository tooling, not a feature of ustack: it needs root, network
// namespaces and a dozen Debian programs, so it lives here and is started by
// scripts/bench.sh rather than by the ustack command.
//
// Each round runs every row once for every variant, the variants taking turns
// within the round, so load from other work on the machine spreads over all
// of them; the table gives the median and the range of the rounds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		if helper, ok := helpers[os.Args[1]]; ok {
			if err := helper(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "bench %s: %v\n", os.Args[1], err)
				var usage usageError
				if errors.As(err, &usage) {
					os.Exit(2)
				}
				os.Exit(1)
			}
			return
		}
	}
	os.Exit(run(os.Args[1:]))
}

type options struct {
	quick    bool
	rounds   int
	duration time.Duration
	rows     []string
	variants []string
	out      string
	ustack   string
	verbose  bool
}

func run(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	var rows, variants string
	fs.BoolVar(&o.quick, "quick", false, "one round of 2 s per measurement (under 4 minutes in all)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every row for every variant")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each measurement")
	fs.StringVar(&rows, "rows", "", "comma-separated rows to measure (default all): "+strings.Join(rowNames(), ","))
	fs.StringVar(&variants, "variants", "", "comma-separated variants (default all): "+strings.Join(variantNames(), ","))
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "file whose marked section gets the tables (- for standard output only)")
	fs.StringVar(&o.ustack, "ustack", "", "ustack binary (default: built from ./cmd/ustack)")
	fs.BoolVar(&o.verbose, "v", false, "print each command and its output")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q; flags only (see -h)\n", fs.Arg(0))
		return 2
	}
	if o.quick {
		o.rounds, o.duration = 1, 2*time.Second
	}
	if o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: --rounds must be at least 1")
		return 2
	}
	var err error
	if o.rows, err = pick(rows, rowNames(), "--rows"); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if o.variants, err = pick(variants, variantNames(), "--variants"); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces, tap and veth devices); run it with sudo")
		return 2
	}
	if missing := missingPrograms(o); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "bench: missing programs: %s; install them (apt-get install %s) or leave their rows/variants out with --rows/--variants\n",
			strings.Join(missing, ", "), strings.Join(packagesOf(missing), " "))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := measure(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	section := renderSection(o, res, time.Now())
	fmt.Print(section)
	if o.out != "-" {
		if err := writeSection(o.out, section); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	return 0
}

// pick parses a comma-separated selection against the known names, keeping
// the known order.
func pick(list string, known []string, flagName string) ([]string, error) {
	if list == "" {
		return known, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		ok := false
		for _, k := range known {
			ok = ok || k == n
		}
		if !ok {
			return nil, fmt.Errorf("%s: unknown name %q; choose from %s", flagName, n, strings.Join(known, ","))
		}
		want[n] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

// debianPackage names the package that provides each external program.
var debianPackage = map[string]string{
	"iperf3": "iperf3", "sockperf": "sockperf", "nginx": "nginx", "wrk": "wrk",
	"pgbench": "postgresql", "postgres": "postgresql", "initdb": "postgresql", "pg_isready": "postgresql",
	"slirp4netns": "slirp4netns", "pasta": "passt", "ip": "iproute2", "runuser": "util-linux",
}

func missingPrograms(o options) []string {
	need := map[string]bool{"ip": true}
	for _, r := range o.rows {
		for _, p := range rowByName(r).needs {
			need[p] = true
		}
	}
	for _, v := range o.variants {
		switch v {
		case "slirp4netns":
			need["slirp4netns"] = true
		case "pasta":
			need["pasta"] = true
		}
	}
	var missing []string
	for _, p := range sortedKeys(need) {
		if _, err := findProgram(p); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

func packagesOf(progs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range progs {
		if pkg := debianPackage[p]; pkg != "" && !seen[pkg] {
			seen[pkg] = true
			out = append(out, pkg)
		}
	}
	return out
}

// findProgram finds a program on PATH or, for PostgreSQL's server programs,
// which Debian keeps off PATH, in /usr/lib/postgresql/*/bin.
func findProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql/*/bin", name))
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", errors.New(name + " not found")
}
