package cli

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/serve"
)

func registerPing(o *serve.PingOptions, s *optionSet) {
	s.add(&option{names: []string{"c", "count"}, arg: "N", value: intValue{p: &o.Count, min: 0, max: math.MaxInt32, what: "a number of requests"},
		help: "stop after N requests (default: until interrupted)"})
	s.add(&option{names: []string{"i", "interval"}, arg: "INTERVAL", value: durationValue{p: &o.Interval, min: time.Millisecond},
		help: "time between requests, seconds or a duration like 200ms (default: 1s)"})
	s.add(&option{names: []string{"W", "timeout"}, arg: "TIMEOUT", value: durationValue{p: &o.Timeout, min: time.Millisecond},
		help: "how long to wait for replies after the last request (default: 10s)"})
	s.add(&option{names: []string{"s", "size"}, arg: "SIZE", value: intValue{p: &o.Size, min: 0, max: serve.MaxPingSize, what: "a payload size in bytes"},
		help: "payload bytes per request (default: 56, making 64-byte ICMP messages)"})
}

func pingCommand() *command {
	c := &command{name: "ping", args: "HOST", summary: "send ICMP echo requests over the user-level stack"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var sf stackFlags
		po := serve.DefaultPingOptions()
		var stackName string
		registerPing(&po, s)
		s.add(stackOption(&stackName))
		sf.register(s)
		sf.registerVerbose(s)
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args, "HOST"); err != nil {
				return err
			}
			if stackName != "" {
				if err := refuseStackFlags(s); err != nil {
					return err
				}
				return pingViaDaemon(ctx, stackName, args[0], po, e)
			}
			st, err := sf.newStack(logTo(e, "ustack"))
			if err != nil {
				return err
			}
			defer closeStack(st, e)
			dst, err := serve.ResolveHost(ctx, st, args[0])
			if err != nil {
				return err
			}
			stats, err := serve.Ping(ctx, st, args[0], dst, po, e.stdout)
			if err != nil {
				return err
			}
			if stats.Received == 0 {
				return &exitError{code: 1}
			}
			return nil
		}
	}
	return c
}

// pingViaDaemon has the daemon run the ping and copies its output.
func pingViaDaemon(ctx context.Context, name, host string, o serve.PingOptions, e *env) error {
	c, err := daemonClient(name)
	if err != nil {
		return err
	}
	req := api.PingRequest{Host: host, Count: o.Count, Interval: o.Interval, Timeout: o.Timeout, Size: o.Size}
	received, err := c.Ping(ctx, req, e.stdout)
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: 1}
		}
		var se *control.StatusError
		if errors.As(err, &se) {
			return errors.New(se.Message) // the daemon's ping says what and where
		}
		return stackError(c, err)
	}
	if received == 0 {
		return &exitError{code: 1}
	}
	return nil
}
