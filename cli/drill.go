package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ustack/ustack/drill"
	"github.com/ustack/ustack/netstack"
)

func drillCommand() *command {
	c := &command{name: "drill", args: "FILE.pkt...",
		summary: "run packetdrill scripts against the user-level stack in virtual time, or the kernel"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var against string
		var realtime, verbose bool
		var sysctls []string
		// packetdrill's own options, applied in drill.Config.Set's terms
		// (the script's header sets the same ones; the command line wins).
		type pdOption struct {
			name, arg, help string
			value           string
			flag            bool
		}
		pd := []*pdOption{
			{name: "tolerance_usecs", arg: "USECS", help: "how far a packet or call may be from its scripted time (default 4000)"},
			{name: "tolerance_percent", arg: "PERCENT", help: "or this share of the time since the last event, if more (default 12.5)"},
			{name: "ip_version", arg: "VERSION", help: "ipv4 (default), ipv4-mapped-ipv6 or ipv6"},
			{name: "local_ip", arg: "IP", help: "the stack's address (default 192.168.0.2, fd3d:fa7b:d17d::1)"},
			{name: "remote_ip", arg: "IP", help: "the scripted peer's address (default 192.0.2.1, 2001:db8::1)"},
			{name: "bind_port", arg: "PORT", help: "the port bind(fd, ..., ...) binds (default 8080)"},
			{name: "connect_port", arg: "PORT", help: "the port connect(fd, ..., ...) reaches (default 8080)"},
			{name: "mtu", arg: "BYTES", help: "the link's MTU (default 1500)"},
			{name: "init_scripts", arg: "FILES", help: "comma-separated files of shell commands run before each script (under ustack: sysctl settings only)"},
			{name: "tcp_ts_tick_usecs", arg: "USECS", help: "check outbound TCP timestamp values at this tick (default 0: unchecked)"},
			{name: "tcp_ts_ecr_scaled", flag: true, help: "infer the live TS ecr of inbound packets whose script ecr names no outbound TS val"},
			{name: "non_fatal", arg: "TYPES", help: "packet: report packet mismatches as warnings and go on"},
			{name: "define", arg: "NAME=VALUE", help: "a symbol for the scripts' system call arguments"},
		}
		for _, o := range pd {
			if o.flag {
				var b bool
				o := o
				s.add(&option{names: []string{o.name}, help: o.help, value: &pdFlag{b: &b, set: func() { o.value = "1" }}})
				continue
			}
			s.add(&option{names: []string{o.name}, arg: o.arg, help: o.help, value: stringValue{&o.value}})
		}
		s.add(&option{names: []string{"sysctl"}, arg: "KEY=VALUE", repeat: true, envSep: ";",
			value: &listValue[string]{p: &sysctls, parse: parseDrillSysctl},
			help:  "a TCP option of ustack's stack (see ustack help fetch), or for the kernel any net.* sysctl; repeatable"})
		s.add(&option{names: []string{"against"}, arg: "STACKS", value: stringValue{&against},
			help: "ustack (default), kernel, or kernel,ustack to run each script on both and show them side by side (the kernel needs root)"})
		s.add(&option{names: []string{"realtime"}, value: boolValue{&realtime},
			help: "run ustack on the wall clock, as packetdrill runs, instead of in virtual time"})
		s.add(&option{names: []string{"v", "verbose"}, value: boolValue{&verbose},
			help: "print every packet and call as the script runs"})
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return usagef("drill: missing FILE.pkt (usage: ustack drill [flags] FILE.pkt...)")
			}
			cfg := drill.DefaultConfig()
			for _, o := range pd {
				if !s.given[o.name] {
					continue
				}
				if err := cfg.Set(o.name, o.value); err != nil {
					return usagef("%v", err)
				}
			}
			cfg.Sysctls, cfg.Realtime, cfg.Verbose = sysctls, realtime, verbose
			targets, err := parseAgainst(against)
			if err != nil {
				return err
			}
			return runDrill(ctx, e, args, targets, cfg)
		}
	}
	return c
}

// pdFlag is a packetdrill switch (--tcp_ts_ecr_scaled).
type pdFlag struct {
	b   *bool
	set func()
}

func (f *pdFlag) Set(s string) error {
	if err := (boolValue{f.b}).Set(s); err != nil {
		return err
	}
	if *f.b {
		f.set()
	}
	return nil
}
func (f *pdFlag) String() string   { return (boolValue{f.b}).String() }
func (f *pdFlag) IsBoolFlag() bool { return true }

// parseDrillSysctl takes KEY=VALUE; ustack's keys are checked when the
// stack is built (a kernel run takes any net.* name).
func parseDrillSysctl(s string) (string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return "", fmt.Errorf("%q is not KEY=VALUE (e.g. tcp.sack=0 or net.ipv4.tcp_sack=0; ustack keys: %s)", s, strings.Join(netstack.SysctlKeys(), ", "))
	}
	return strings.TrimSpace(k) + "=" + v, nil
}

func parseAgainst(s string) ([]string, error) {
	if s == "" {
		return []string{"ustack"}, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if t != "ustack" && t != "kernel" {
			return nil, usagef("--against: unknown stack %q (use ustack, kernel or kernel,ustack)", t)
		}
		if !seen[t] {
			out = append(out, t)
			seen[t] = true
		}
	}
	return out, nil
}

// runDrill runs every script on every stack and reports as packetdrill
// does: nothing more than a status line for a script that passes, the
// failure (script line, expected and actual) for one that does not.
func runDrill(ctx context.Context, e *env, files, targets []string, cfg drill.Config) error {
	failed := 0
	rn := drill.NewRunner(cfg, nil)
	defer rn.Close()
	for _, f := range files {
		var results []*drill.Result
		for _, t := range targets {
			if ctx.Err() != nil {
				return &exitError{code: 1, msg: "drill: interrupted"}
			}
			r := rn.Run(f, t)
			results = append(results, r)
			if !r.OK() {
				failed++
			}
		}
		printDrillResults(e.stdout, f, results)
	}
	if failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("drill: %d of %d runs failed", failed, len(files)*len(targets))}
	}
	return nil
}

func printDrillResults(w io.Writer, file string, results []*drill.Result) {
	var cols []string
	for _, r := range results {
		cols = append(cols, fmt.Sprintf("%s %s", r.Target, r.Status()))
	}
	line := strings.Join(cols, "  ")
	if len(results) == 2 && results[0].Err == nil != (results[1].Err == nil) {
		line += "  (the stacks differ)"
	}
	fmt.Fprintf(w, "%-48s %s\n", file, line)
	for _, r := range results {
		for _, l := range r.Log {
			fmt.Fprintf(w, "  [%s] %s\n", r.Target, l)
		}
		switch {
		case r.Skipped != "":
			fmt.Fprintf(w, "  [%s] skipped: %s\n", r.Target, r.Skipped)
		case r.Status() == "known-difference":
			fmt.Fprintf(w, "  [%s] known difference: %s\n", r.Target, r.KnownDifference)
			fmt.Fprintf(w, "  [%s] %s\n", r.Target, indent(r.Err.Error()))
		case r.Status() == "unexpected-pass":
			fmt.Fprintf(w, "  [%s] passes, but the script marks it as a known difference (%s): remove the mark\n", r.Target, r.KnownDifference)
		case r.Err != nil:
			fmt.Fprintf(w, "  [%s] %s\n", r.Target, indent(r.Err.Error()))
		}
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n      ") }
