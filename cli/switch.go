package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/vswitch"
)

func switchCommand() *command {
	c := &command{name: "switch", args: "NAME [status]", summary: "run a user-space Ethernet switch that stacks attach to with --net switch:NAME"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var mtu int
		var aging time.Duration
		var asJSON bool
		s.add(&option{names: []string{"mtu"}, arg: "N", value: intValue{p: &mtu, min: vswitch.MinMTU, max: vswitch.MaxMTU, what: "an MTU in bytes"},
			help: fmt.Sprintf("largest IP packet of a frame the switch carries, %d-%d (default %d; TCP super-frames of the stacks cross whole); stacks take it as their MTU", vswitch.MinMTU, vswitch.MaxMTU, vswitch.DefaultMTU)})
		s.add(&option{names: []string{"aging"}, arg: "DURATION", value: durationValue{p: &aging, min: time.Second},
			help: fmt.Sprintf("how long a learned address is kept without frames from it (default %v)", vswitch.DefaultAging)})
		s.add(&option{names: []string{"json"}, value: boolValue{&asJSON}, help: "status: print JSON"})
		return s, func(ctx context.Context, e *env, args []string) error {
			switch {
			case len(args) == 0:
				return usagef("switch: missing NAME (usage: ustack switch [flags] NAME [status])")
			case !control.ValidName(args[0]):
				return usagef("switch: %q is not a valid name (use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", args[0])
			case len(args) == 2 && args[1] == "status":
				for _, n := range []string{"mtu", "aging"} {
					if s.given[n] {
						return usagef("%s: is for starting a switch, not with status (drop it)", s.lookup(n).display())
					}
				}
				return switchStatus(e, args[0], asJSON)
			case len(args) > 1:
				return usagef("switch: unexpected argument %q (usage: ustack switch [flags] NAME [status])", args[1])
			}
			return runSwitch(ctx, e, args[0], vswitch.Config{MTU: mtu, Aging: aging})
		}
	}
	return c
}

// runSwitch serves the switch until SIGINT or SIGTERM.
func runSwitch(ctx context.Context, e *env, name string, cfg vswitch.Config) error {
	prefix := "ustack switch " + name
	cfg.Logf = logTo(e, prefix)
	sw, err := vswitch.Listen(name, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "already running") {
			return usagef("switch: %v", err)
		}
		return fmt.Errorf("switch: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- sw.Serve() }()
	fmt.Fprintf(e.stdout, "%s: ready on %s (MTU %d)\n", prefix, sw.Path(), sw.MTU())
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	if cerr := sw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	fmt.Fprintf(e.stdout, "%s: stopped\n", prefix)
	return nil
}

func switchStatus(e *env, name string, asJSON bool) error {
	st, err := vswitch.GetStatus(name)
	var nr *vswitch.NotRunningError
	if errors.As(err, &nr) {
		return fmt.Errorf("switch: %v", err)
	}
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	if asJSON {
		return writeJSON(e.stdout, st)
	}
	fmt.Fprintf(e.stdout, "switch %s: pid %d, MTU %d, aging %gs, %d ports, %d addresses learned, %d frames flooded\n",
		st.Name, st.PID, st.MTU, st.AgingSeconds, len(st.Ports), st.Learned, st.Flooded)
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tSTACK\tPID\tCOMMAND\tMACS\tIN-FRAMES\tIN-BYTES\tIN-DROPPED\tOUT-FRAMES\tOUT-BYTES\tOUT-DROPPED\tQUEUED")
	for _, p := range st.Ports {
		label := p.Label
		if label == "" {
			label = "-"
		}
		macs := strings.Join(p.MACs, ",")
		switch {
		case macs == "":
			macs = "-"
		case p.MoreMACs > 0:
			macs += fmt.Sprintf(",+%d", p.MoreMACs)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Port, label, p.PID, p.Command, macs,
			p.InFrames, p.InBytes, p.InDropped, p.OutFrames, p.OutBytes, p.OutDropped, p.Queued)
	}
	return tw.Flush()
}
