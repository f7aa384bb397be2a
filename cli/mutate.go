package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/mutate"
)

// mutateCommand is ustack mutate: the packet-mutator rules of a running
// stack. It is a command of its own rather than part of ustack link: link
// speaks tc's words per direction of a NIC, while the rules are one ordered
// list with both directions in it, and counters per rule.
func mutateCommand() *command {
	c := &command{name: "mutate", args: "set [NAME] RULE... | clear [NAME] | show [NAME]",
		summary: "change or show the packet-mutator rules of a running stack's NIC"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		// Rules are words of their own ("in", "50%"): nothing after the
		// subcommand is parsed as a flag here.
		s := &optionSet{cmd: c.name, argsAfterFirst: true}
		var asJSON bool
		s.add(&option{names: []string{"json"}, value: boolValue{&asJSON}, help: "show: print the rules as JSON (GET /v1/mutate)"})
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return usagef("mutate: missing set, clear or show (usage: ustack mutate %s)", c.args)
			}
			switch args[0] {
			case "set":
				return mutateSet(ctx, args[1:])
			case "clear":
				if len(args) > 2 {
					return usagef("mutate clear: unexpected argument %q (usage: ustack mutate clear [NAME])", args[2])
				}
				return mutatePost(ctx, "mutate clear", first(args[1:]), nil)
			case "show":
				show := &optionSet{cmd: "mutate show"}
				show.add(s.lookup("json"))
				rest, err := show.parse(args[1:], func(string) (string, bool) { return "", false })
				if err != nil {
					return err
				}
				if len(rest) > 1 {
					return usagef("mutate show: unexpected argument %q (usage: ustack mutate show [NAME])", rest[1])
				}
				return mutateShow(ctx, e, first(rest), asJSON)
			}
			return usagef("mutate: %q is not set, clear or show (usage: ustack mutate %s)", args[0], c.args)
		}
	}
	return c
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

const mutateSetUsage = `usage: ustack mutate set [NAME] RULE..., one rule an argument, e.g. ustack mutate set web "drop tcp dport 80 flags S" ack-division=4`

// mutateSet is ustack mutate set [NAME] RULE...: the rules replace those in
// force. NAME may be left out when one stack runs; it is told from a rule
// by not being one.
func mutateSet(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("mutate set: missing RULE (%s)", mutateSetUsage)
	}
	name := ""
	if _, err := mutate.Parse(args[0]); err != nil && len(args) > 1 {
		name, args = args[0], args[1:]
	}
	var texts []string
	for _, a := range args {
		r, err := mutate.Parse(a)
		if err != nil {
			return usagef("mutate set: %q: %v", a, err)
		}
		texts = append(texts, r.String())
	}
	return mutatePost(ctx, "mutate set", name, texts)
}

// mutatePost replaces the rules of the stack called name.
func mutatePost(ctx context.Context, cmd, name string, rules []string) error {
	c, err := stackNamed(ctx, cmd, name)
	if err != nil {
		return err
	}
	var reply api.MutateReply
	return linkError(cmd, c, c.PostJSON(ctx, api.MutatePath, api.MutateRequest{Rules: append([]string{}, rules...)}, &reply))
}

// mutateShow is ustack mutate show [NAME].
func mutateShow(ctx context.Context, e *env, name string, asJSON bool) error {
	c, err := stackNamed(ctx, "mutate show", name)
	if err != nil {
		return err
	}
	var reply api.MutateReply
	if err := linkError("mutate show", c, c.Get(ctx, api.MutatePath, &reply)); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(e.stdout, reply)
	}
	formatMutate(e.stdout, reply)
	return nil
}

// formatMutate writes the rules one a paragraph, like ustack link show:
//
//	dev eth0 rule 1: ack-division=4
//	 matched 120 acted 60 injected 180
//	dev eth0 malformed 0
func formatMutate(w io.Writer, r api.MutateReply) {
	if len(r.Rules) == 0 {
		fmt.Fprintf(w, "dev %s: no rules\n", r.Dev)
	}
	for i, rule := range r.Rules {
		fmt.Fprintf(w, "dev %s rule %d: %s\n", r.Dev, i+1, rule.Rule)
		fmt.Fprintf(w, " matched %d acted %d injected %d\n", rule.Matched, rule.Acted, rule.Injected)
	}
	fmt.Fprintf(w, "dev %s malformed %d\n", r.Dev, r.Malformed)
}
