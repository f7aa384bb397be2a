package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/lab"
	"github.com/ustack/ustack/serve"
)

// ustack lab: topologies of user-level stacks, one process per node.

func labCommand() *command {
	c := &command{name: "lab", args: "SUBCOMMAND [flags] [arguments]", summary: "run a lab of hosts and routers, each a user-level stack, wired by emulated links"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name, argsAfterFirst: true}
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return usagef("lab: missing subcommand (%s; see: ustack lab --help)", strings.Join(labSubcommandNames(), ", "))
			}
			if args[0] == "_node" {
				// A node's process, started by ustack lab up.
				if code := lab.NodeMain(os.Stderr); code != 0 {
					return &exitError{code: code}
				}
				return nil
			}
			sub, ok := labSubcommands()[args[0]]
			if !ok {
				return usagef("lab: %s: unknown subcommand (%s)", args[0], strings.Join(labSubcommandNames(), ", "))
			}
			opts, runSub := sub.options()
			// Lab flags are not read from the environment: --name there
			// would be a daemon's.
			positional, err := opts.parse(args[1:], func(string) (string, bool) { return "", false })
			if errors.Is(err, errHelp) {
				fmt.Fprint(e.stdout, labSubcommandHelp(sub))
				return nil
			}
			if err != nil {
				return err
			}
			return runSub(ctx, e, positional)
		}
	}
	return c
}

func labSubcommands() map[string]*command {
	m := map[string]*command{}
	for _, c := range []*command{labUpCommand(), labExecCommand(), labLsCommand(), labDownCommand(), labLinkCommand(), labGraphCommand(), labReplayCommand()} {
		m[c.name] = c
	}
	return m
}

func labSubcommandNames() []string {
	var names []string
	for n := range labSubcommands() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func labHelp() string {
	var b strings.Builder
	b.WriteString("Subcommands:\n")
	subs := labSubcommands()
	for _, n := range labSubcommandNames() {
		fmt.Fprintf(&b, "  ustack lab %s %s\n      %s\n", n, subs[n].args, subs[n].summary)
	}
	b.WriteString("\nA node's stack is also reached as LAB/NODE by ss, stats, top, trace, capture,\nping --stack and run --stack.\n")
	return b.String()
}

func labSubcommandHelp(c *command) string {
	opts, _ := c.options()
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: ustack lab %s [flags] %s\n\n%s%s.\n", c.name, c.args, strings.ToUpper(c.summary[:1]), c.summary[1:])
	if len(opts.opts) > 0 {
		b.WriteString("\nFlags:\n")
		for _, o := range opts.opts {
			fmt.Fprintf(&b, "  %s\n      %s\n", o.usage(), o.help)
		}
	}
	return b.String()
}

// notifyEnv names the descriptor on which a detached lab process says it
// is up (or why not); the foreground process waits on it.
const notifyEnv = "USTACK_LAB_NOTIFY_FD"

func labUpCommand() *command {
	c := &command{name: "up", args: "FILE.yaml", summary: "start the lab a topology file describes, a process per node; Ctrl-C or ustack lab down stops it"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: "lab up"}
		var name, logFile string
		var detach, hold bool
		s.add(&option{names: []string{"name"}, arg: "LAB", value: stringValue{&name},
			help: "the lab's name (default: the file's name:, else the file's base name)"})
		s.add(&option{names: []string{"d", "detach"}, value: boolValue{&detach},
			help: "return once the lab is up, leaving it running in the background"})
		s.add(&option{names: []string{"log"}, arg: "FILE", value: stringValue{&logFile},
			help: "with -d: append the lab's log to FILE (default: discard it)"})
		s.add(&option{names: []string{"hold-replays"}, value: boolValue{&hold},
			help: "leave the pcap links' replays waiting until ustack lab replay LAB (start a trace or capture first)"})
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs("lab up", args, "FILE.yaml"); err != nil {
				return err
			}
			if name != "" && !lab.ValidLabName(name) {
				return usagef("lab up: --name: %q is not a lab name (use up to 32 letters, digits, '_' or '-', starting with a letter or digit)", name)
			}
			topo, err := lab.Load(args[0], name)
			if err != nil {
				var le *lab.Error
				if errors.As(err, &le) {
					return usagef("lab up: %v", err)
				}
				return usagef("lab up: %v", err)
			}
			if logFile != "" && !detach {
				return usagef("lab up: --log: goes with -d (in the foreground the log is stderr)")
			}
			if detach {
				return detachLab(e, args[0], topo.Name, logFile, hold)
			}
			return runLab(ctx, e, topo, hold)
		}
	}
	return c
}

// runLab runs the lab in this process until Ctrl-C or ustack lab down.
func runLab(ctx context.Context, e *env, topo *lab.Topology, holdReplays bool) error {
	var notify *os.File
	if v := os.Getenv(notifyEnv); v != "" {
		os.Unsetenv(notifyEnv) // not for the nodes
		if fd, err := strconv.Atoi(v); err == nil {
			notify = os.NewFile(uintptr(fd), "notify")
		}
	}
	version, _ := versions()
	l, err := lab.Up(topo, lab.Options{Version: version, Log: fileOr(e.stderr, os.Stderr), HoldReplays: holdReplays})
	if err != nil {
		if notify != nil {
			fmt.Fprintf(notify, "error: %v\n", err)
			notify.Close()
		}
		return fmt.Errorf("lab up: %w", err)
	}
	summary := labSummary(l.Status())
	if notify != nil {
		fmt.Fprint(notify, summary)
		notify.Close()
	} else {
		fmt.Fprint(e.stdout, summary)
	}
	if err := l.Serve(ctx); err != nil {
		return fmt.Errorf("lab %s: control socket: %w", topo.Name, err)
	}
	if notify == nil {
		fmt.Fprintf(e.stdout, "lab %s: down\n", topo.Name)
	}
	return nil
}

// labSummary describes a lab that is up, node by node.
func labSummary(st lab.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s: up, %d nodes, %d links (ustack lab down %s to stop)\n", st.Name, len(st.Nodes), len(st.Links), st.Name)
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tIFACE\tADDRESSES\tPEER\tEGRESS")
	for _, n := range st.Nodes {
		for i, ifc := range n.Interfaces {
			node, kind := n.Name, string(n.Kind)
			if i > 0 {
				node, kind = "", ""
			}
			egress := ifc.Egress
			if egress == "" {
				egress = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", node, kind, ifc.Name, strings.Join(ifc.Addrs, " "), ifc.Peer, egress)
		}
	}
	tw.Flush()
	return b.String()
}

// detachLab starts the lab in a process of its own, in a session of its
// own, and returns once it is up.
func detachLab(e *env, file, name, logFile string, holdReplays bool) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if logFile != "" {
		out, err = os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	}
	if err != nil {
		w.Close()
		return usagef("lab up: --log: %v", err)
	}
	defer out.Close()
	args := []string{"lab", "up", "--name", name}
	if holdReplays {
		args = append(args, "--hold-replays")
	}
	cmd := exec.Command(exe, append(args, file)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), notifyEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	w.Close()
	go cmd.Wait() // reaped if it ends while we wait
	msg, _ := io.ReadAll(bufio.NewReader(r))
	text := string(msg)
	if after, isErr := strings.CutPrefix(text, "error: "); isErr || text == "" {
		if text == "" {
			after = "the lab process ended before it was up"
		}
		return fmt.Errorf("lab up: %s", strings.TrimSpace(after))
	}
	fmt.Fprint(e.stdout, text)
	return nil
}

func labExecCommand() *command {
	c := &command{name: "exec", args: "LAB NODE [--] PROG [ARGS...]", summary: "run an unmodified program on a node, its sockets on the node's stack (as ustack run)"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: "lab exec", argsAfterFirst: true}
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) > 2 && args[2] == "--" {
				args = append(args[:2:2], args[3:]...)
			}
			if len(args) < 3 {
				return usagef("lab exec: want LAB NODE PROG (usage: ustack lab exec LAB NODE -- PROG [ARGS...])")
			}
			if err := intercept.CheckKernel(); err != nil {
				return err
			}
			labName, node := args[0], args[1]
			st, err := (&lab.Client{Name: labName}).Status(ctx)
			if err != nil {
				return fmt.Errorf("lab exec: %w", err)
			}
			if !hasNode(st, node) {
				return usagef("lab exec: lab %s has no node %s (its nodes: %s)", labName, node, nodeNames(st))
			}
			c := control.Dial(lab.NodeSocketName(labName, node))
			// The program ends with its node, as a container's does:
			// its sockets are gone with the node.
			ps, err := serve.RunAttached(ctx, c, program(e, args[2:]))
			var gone *serve.StackGoneError
			if errors.As(err, &gone) {
				return fmt.Errorf("lab exec: node %s of lab %s went down: %w", node, labName, err)
			}
			if err != nil {
				return startError(err)
			}
			return exitStatus(ps)
		}
	}
	return c
}

func hasNode(st lab.Status, name string) bool {
	for _, n := range st.Nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}

func nodeNames(st lab.Status) string {
	var names []string
	for _, n := range st.Nodes {
		names = append(names, n.Name)
	}
	return strings.Join(names, ", ")
}

func labLsCommand() *command {
	c := &command{name: "ls", args: "[LAB]", summary: "list the labs that are up, or one lab's nodes"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: "lab ls"}
		var asJSON bool
		s.add(&option{names: []string{"json"}, value: boolValue{&asJSON}, help: "print JSON"})
		return s, func(ctx context.Context, e *env, args []string) error {
			switch len(args) {
			case 0:
				labs, err := lab.List(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					if labs == nil {
						labs = []lab.Status{}
					}
					return writeJSON(e.stdout, labs)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "LAB\tPID\tNODES\tLINKS\tFILE")
				for _, st := range labs {
					running := 0
					for _, n := range st.Nodes {
						if n.State == "running" {
							running++
						}
					}
					fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%d\t%s\n", st.Name, st.PID, running, len(st.Nodes), len(st.Links), st.File)
				}
				return tw.Flush()
			case 1:
				st, err := (&lab.Client{Name: args[0]}).Status(ctx)
				if err != nil {
					return fmt.Errorf("lab ls: %w", err)
				}
				if asJSON {
					return writeJSON(e.stdout, st)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tKIND\tPID\tSTATE\tADDRESSES\tSTACK")
				for _, n := range st.Nodes {
					var addrs []string
					for _, ifc := range n.Interfaces {
						addrs = append(addrs, ifc.Addrs...)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s/%s\n", n.Name, n.Kind, n.PID, n.State, strings.Join(addrs, " "), st.Name, n.Name)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				// The replays of pcap links, with how far they got.
				for _, l := range st.Links {
					if p := l.Pcap; p != nil {
						fmt.Fprintf(e.stdout, "\npcap link %d: %s <- %s (speed %s): %s, %d frames replayed, %d skipped, %d sent, %d resolutions answered",
							l.Index, l.Ends[0], p.File, p.Speed, p.State, p.Replayed, p.Skipped, p.Sent, p.Answered)
						if p.Out != "" {
							fmt.Fprintf(e.stdout, " to %s", p.Out)
						}
						fmt.Fprintln(e.stdout)
					}
				}
				return nil
			}
			return wantArgs("lab ls", args, "[LAB]")
		}
	}
	return c
}

func labReplayCommand() *command {
	c := &command{name: "replay", args: "LAB", summary: "start the pcap links' replays of a lab brought up with --hold-replays"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: "lab replay"}
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs("lab replay", args, "LAB"); err != nil {
				return err
			}
			st, err := (&lab.Client{Name: args[0]}).StartReplays(ctx)
			if err != nil {
				return fmt.Errorf("lab replay: %w", err)
			}
			n := 0
			for _, l := range st.Links {
				if l.Pcap != nil {
					n++
					fmt.Fprintf(e.stdout, "pcap link %d: %s <- %s: %s\n", l.Index, l.Ends[0], l.Pcap.File, l.Pcap.State)
				}
			}
			if n == 0 {
				return fmt.Errorf("lab replay: lab %s has no pcap link", st.Name)
			}
			return nil
		}
	}
	return c
}

func labDownCommand() *command {
	c := &command{name: "down", args: "LAB", summary: "stop a lab: its nodes, their programs' sockets, and every file it made"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: "lab down"}
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs("lab down", args, "LAB"); err != nil {
				return err
			}
			st, err := (&lab.Client{Name: args[0]}).Down(ctx)
			if err != nil {
				return fmt.Errorf("lab down: %w", err)
			}
			fmt.Fprintf(e.stdout, "lab %s: down (%d nodes stopped)\n", st.Name, len(st.Nodes))
			return nil
		}
	}
	return c
}

func labLinkCommand() *command {
	c := &command{name: "link", args: "LAB NODE IFACE [in|out|both] [SPEC...]",
		summary: "show an interface's link emulation and counters, or set it (default: the frames leaving it); as ustack link show|set LAB/NODE IFACE"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		// The words of a spec may look like flags (overhead -4).
		s := &optionSet{cmd: "lab link", argsAfterFirst: true}
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) < 3 {
				return usagef("lab link: want LAB NODE IFACE (usage: ustack lab link %s)", c.args)
			}
			stack, iface, rest := args[0]+"/"+args[1], args[2], args[3:]
			if len(rest) == 0 {
				return linkShow(ctx, e, []string{stack, iface}, false)
			}
			// A lab's link is shaped at each end's egress: a spec with no
			// direction is for the frames leaving this end.
			if linkDirections[rest[0]] == "" {
				rest = append([]string{"out"}, rest...)
			}
			return linkSet(ctx, e, append([]string{stack, iface}, rest...))
		}
	}
	return c
}

func init() {
	// ustack help lab lists the subcommands; kept here with them.
	commandDetails["lab"] = labHelp()
}

func labGraphCommand() *command {
	c := &command{name: "graph", args: "LAB|FILE.yaml", summary: "draw a lab (running, or from its file) with its addresses and link parameters: Graphviz DOT, or SVG or PNG drawn by Graphviz's dot"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: "lab graph"}
		var out string
		s.add(&option{names: []string{"o", "output"}, arg: "FILE", value: stringValue{&out},
			help: "write FILE: .svg or .png (drawn by dot, from the graphviz package), .dot or .gv (the DOT text); default: DOT on stdout"})
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs("lab graph", args, "LAB|FILE.yaml"); err != nil {
				return err
			}
			format := ""
			switch ext := strings.ToLower(filepath.Ext(out)); {
			case out == "" || out == "-" || ext == ".dot" || ext == ".gv":
			case ext == ".svg" || ext == ".png":
				format = ext[1:]
			default:
				return usagef("lab graph: -o: %q: name a .svg, .png, .dot or .gv file", out)
			}
			var st lab.Status
			if ext := filepath.Ext(args[0]); ext == ".yaml" || ext == ".yml" {
				topo, err := lab.Load(args[0], "")
				if err != nil {
					return usagef("lab graph: %v", err)
				}
				st = topo.Status()
			} else {
				var err error
				if st, err = (&lab.Client{Name: args[0]}).Status(ctx); err != nil {
					return fmt.Errorf("lab graph: %w", err)
				}
			}
			dot := lab.DOT(st)
			if format == "" {
				if out == "" || out == "-" {
					_, err := e.stdout.Write(dot)
					return err
				}
				return os.WriteFile(out, dot, 0o644)
			}
			return renderDOT(ctx, dot, format, out)
		}
	}
	return c
}

// renderDOT has Graphviz's dot draw the graph into out.
func renderDOT(ctx context.Context, dot []byte, format, out string) error {
	path, err := exec.LookPath("dot")
	if err != nil {
		return fmt.Errorf("lab graph: drawing %s needs Graphviz's dot (apt-get install graphviz), or write the DOT text with -o %s", out, strings.TrimSuffix(out, filepath.Ext(out))+".dot")
	}
	cmd := exec.CommandContext(ctx, path, "-T"+format, "-o", out)
	cmd.Stdin = bytes.NewReader(dot)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("lab graph: dot: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
