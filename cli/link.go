package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/shape"
)

func linkCommand() *command {
	c := &command{name: "link", args: "set [NAME] DEV [in|out] SPEC... | show [NAME] [DEV]",
		summary: "change or show the emulated link of a running stack's NIC, like tc qdisc"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		// The words after set are netem's, and may look like flags
		// (overhead -4): nothing after the subcommand is parsed here.
		s := &optionSet{cmd: c.name, argsAfterFirst: true}
		var asJSON bool
		s.add(&option{names: []string{"json"}, value: boolValue{&asJSON}, help: "show: print the links as JSON (GET /v1/link)"})
		return s, func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return usagef("link: missing set or show (usage: ustack link %s)", c.args)
			}
			switch args[0] {
			case "set":
				return linkSet(ctx, e, args[1:])
			case "show":
				show := &optionSet{cmd: "link show"}
				show.add(s.lookup("json"))
				rest, err := show.parse(args[1:], func(string) (string, bool) { return "", false })
				if err != nil {
					return err
				}
				return linkShow(ctx, e, rest, asJSON)
			}
			return usagef("link: %q is not set or show (usage: ustack link %s)", args[0], c.args)
		}
	}
	return c
}

// linkDirections are the words that choose a direction in link set.
var linkDirections = map[string]string{"out": "egress", "egress": "egress", "in": "ingress", "ingress": "ingress", "both": "both"}

const linkSetUsage = "usage: ustack link set [NAME] DEV [in|out] SPEC..., e.g. ustack link set web eth0 rate 5mbit delay 40ms"

// linkSet is ustack link set [NAME] DEV [in|out] SPEC...: NAME may be left
// out when one stack runs; it is told from DEV by the word after it, which
// is a direction or begins the spec. SPEC "none" takes every impairment
// away.
func linkSet(ctx context.Context, e *env, args []string) error {
	var name, dev string
	var rest []string
	switch {
	case len(args) < 2:
		return usagef("link set: missing DEV and SPEC (%s)", linkSetUsage)
	case startsSpec(args[1]):
		dev, rest = args[0], args[1:]
	default:
		name, dev, rest = args[0], args[1], args[2:]
	}
	req := api.LinkRequest{Dev: dev, Direction: "both"}
	if len(rest) > 0 && linkDirections[rest[0]] != "" {
		req.Direction = linkDirections[rest[0]]
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return usagef("link set: missing SPEC after %s (netem's words, e.g. rate 5mbit delay 40ms, or none to take them away; %s)", dev, linkSetUsage)
	}
	if !(len(rest) == 1 && rest[0] == "none") {
		spec, err := shape.ParseArgs(rest)
		if err != nil {
			return usagef("link set: %v", err)
		}
		req.Spec = spec.String()
	}
	c, err := stackNamed(ctx, "link set", name)
	if err != nil {
		return err
	}
	var reply api.LinkReply
	return linkError("link set", c, c.PostJSON(ctx, api.LinkPath, req, &reply))
}

// startsSpec tells whether w, the second word of link set, follows DEV
// rather than NAME.
func startsSpec(w string) bool {
	return linkDirections[w] != "" || shape.IsKeyword(w) || w == "none"
}

// linkShow is ustack link show [NAME] [DEV].
func linkShow(ctx context.Context, e *env, args []string, asJSON bool) error {
	var name, dev string
	switch len(args) {
	case 2:
		dev = args[1]
		fallthrough
	case 1:
		name = args[0]
	case 0:
	default:
		return usagef("link show: unexpected argument %q (usage: ustack link show [NAME] [DEV])", args[2])
	}
	c, err := stackNamed(ctx, "link show", name)
	if err != nil {
		return err
	}
	path := api.LinkPath
	if dev != "" {
		path += "?dev=" + dev
	}
	var reply api.LinkReply
	if err := linkError("link show", c, c.Get(ctx, path, &reply)); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(e.stdout, reply)
	}
	for _, l := range reply.Links {
		formatLink(e.stdout, l)
	}
	return nil
}

// linkError words a failure of the stack c for cmd.
func linkError(cmd string, c *control.Client, err error) error {
	var nr *control.NotRunningError
	var se *control.StatusError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nr):
		return fmt.Errorf("%s: no stack named %s is running (see: ustack ls)", cmd, c.Name)
	case errors.As(err, &se) && se.Code/100 == 4:
		return usagef("%s: %s", cmd, se.Message)
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

// formatLink writes a link in the manner of tc -s qdisc show:
//
//	dev eth0 egress: rate 10mbit delay 25ms (seed 7)
//	 Sent 1514000 bytes 1000 pkt (dropped 12: loss 10, queue 2, aqm 0; duplicated 0 corrupted 0 reordered 0 errors 0)
//	 backlog 3028b 2p queued, 30280b 20p in flight
func formatLink(w io.Writer, l api.Link) {
	for _, d := range []struct {
		name string
		v    api.LinkDirection
	}{{"egress", l.Egress}, {"ingress", l.Ingress}} {
		v := d.v
		spec := v.Spec
		switch {
		case spec == "":
			spec = "none"
		case !strings.Contains(spec, "seed "):
			spec += fmt.Sprintf(" (seed %d)", v.Seed)
		}
		dropped := v.DroppedLoss + v.DroppedQueue + v.DroppedAQM
		fmt.Fprintf(w, "dev %s %s: %s\n", l.Dev, d.name, spec)
		fmt.Fprintf(w, " Sent %d bytes %d pkt (dropped %d: loss %d, queue %d, aqm %d; duplicated %d corrupted %d reordered %d errors %d)\n",
			v.SentBytes, v.SentPackets, dropped, v.DroppedLoss, v.DroppedQueue, v.DroppedAQM, v.Duplicated, v.Corrupted, v.Reordered, v.Errors)
		fmt.Fprintf(w, " backlog %db %dp queued, %db %dp in flight\n", v.QueueBytes, v.QueuePackets, v.InFlightBytes, v.InFlightPackets)
	}
}
