package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"text/tabwriter"

	"github.com/ustack/ustack/control/api"
)

func statsCommand() *command {
	c := &command{name: "stats", args: "[NAME]", summary: "print a stack's counters, like nstat"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name, bundled: true}
		var asJSON, zeros bool
		s.add(&option{names: []string{"z", "zeros"}, value: boolValue{&zeros}, help: "also print counters that are zero"})
		s.add(&option{names: []string{"json"}, value: boolValue{&asJSON}, help: "print JSON: name, metric, labels, value, source of each counter"})
		return s, func(ctx context.Context, e *env, args []string) error {
			client, err := pickStack(ctx, c.name, args)
			if err != nil {
				return err
			}
			var reply api.StatsReply
			if err := getFrom(ctx, c.name, client, "/v1/stats", &reply); err != nil {
				return err
			}
			var shown []api.Counter
			for _, ctr := range reply.Counters {
				if zeros || ctr.Value != 0 {
					shown = append(shown, ctr)
				}
			}
			if asJSON {
				if shown == nil {
					shown = []api.Counter{}
				}
				return writeJSON(e.stdout, shown)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintf(tw, "#%s\n", reply.Name)
			for _, ctr := range shown {
				fmt.Fprintf(tw, "%s\t%d\n", ctr.Key(), ctr.Value)
			}
			return tw.Flush()
		}
	}
	return c
}

// metricsFlag is --metrics-addr of run and daemon.
type metricsFlag struct{ addr string }

func (m *metricsFlag) register(s *optionSet) {
	s.add(&option{names: []string{"metrics-addr"}, arg: "HOST:PORT", value: addrValue{&m.addr},
		help: "also serve the stack's counters for Prometheus at http://HOST:PORT/metrics (the control socket always has /metrics)"})
}

type addrValue struct{ p *string }

func (v addrValue) Set(s string) error {
	host, port, err := net.SplitHostPort(s)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q is not HOST:PORT (use e.g. 127.0.0.1:9100, [::1]:9100 or :9100)", s)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: host %q is not an IP address (use e.g. 127.0.0.1:9100)", s, host)
	}
	*v.p = s
	return nil
}

func (v addrValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

// listen opens the metrics port before the stack is built, so that a port
// in use is a usage error, not a half-started stack. nil if not asked for.
func (m *metricsFlag) listen() (net.Listener, error) {
	if m.addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return nil, usagef("--metrics-addr: %v (choose a free port)", err)
	}
	return ln, nil
}
