package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/netstack"
)

// sysctlCommand is ustack sysctl: read and change the stack-wide TCP
// options (the keys of --sysctl) of a running stack.
func sysctlCommand() *command {
	c := &command{name: "sysctl", args: "[NAME] [KEY[=VALUE]...]",
		summary: "show or change a running stack's TCP options (the keys of --sysctl), saying which apply only to new connections"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var asJSON bool
		s.add(&option{names: []string{"json"}, value: boolValue{&asJSON}, help: "print the reply as JSON (GET or POST /v1/sysctl)"})
		return s, func(ctx context.Context, e *env, args []string) error {
			name := ""
			if len(args) > 0 && !strings.Contains(args[0], "=") {
				if _, ok := netstack.SysctlKey(args[0]); !ok {
					name, args = args[0], args[1:]
				}
			}
			var gets, sets []string
			for _, a := range args {
				key, value, isSet := strings.Cut(a, "=")
				if _, ok := netstack.SysctlKey(key); !ok {
					return usagef("sysctl: unknown key %q (known: %s)", key, strings.Join(netstack.SysctlKeys(), ", "))
				}
				if !isSet {
					gets = append(gets, key)
					continue
				}
				var check netstack.TCPOptions
				if err := check.Set(key, value); err != nil {
					return usagef("sysctl: %v", err)
				}
				sets = append(sets, a)
			}
			if len(gets) > 0 && len(sets) > 0 {
				return usagef("sysctl: give keys to show or KEY=VALUE settings to make, not both")
			}
			c, err := stackNamed(ctx, "sysctl", name)
			if err != nil {
				return err
			}
			var reply api.SysctlReply
			if len(sets) > 0 {
				err = c.PostJSON(ctx, api.SysctlPath, api.SysctlRequest{Set: sets}, &reply)
			} else {
				err = c.Get(ctx, api.SysctlPath, &reply)
			}
			if err := linkError("sysctl", c, err); err != nil {
				return err
			}
			if len(gets) > 0 {
				reply.Settings = pickSettings(reply.Settings, gets)
			}
			if asJSON {
				return writeJSON(e.stdout, reply)
			}
			formatSysctl(e.stdout, reply.Settings)
			return nil
		}
	}
	return c
}

// pickSettings keeps the settings of keys, in their order.
func pickSettings(all []api.SysctlSetting, keys []string) []api.SysctlSetting {
	var out []api.SysctlSetting
	for _, k := range keys {
		canon, _ := netstack.SysctlKey(k)
		for _, st := range all {
			if st.Key == canon {
				out = append(out, st)
			}
		}
	}
	return out
}

// formatSysctl writes one setting a line, like sysctl(8), with when a
// change of it takes effect:
//
//	tcp.sack = 0	(new connections)
func formatSysctl(w io.Writer, settings []api.SysctlSetting) {
	for _, st := range settings {
		fmt.Fprintf(w, "%s = %s\t(%s)\n", st.Key, st.Value, st.Applies)
	}
}
