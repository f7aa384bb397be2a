package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/ustack/ustack/portd"
	"github.com/ustack/ustack/portd/server"
)

func portdCommand() *command {
	c := &command{name: "portd", args: "[status]",
		summary: "serve host ports to --net host stacks of users without root (runs as root)"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		socket, policy := portd.DefaultSocket, ""
		s.add(&option{names: []string{"socket"}, arg: "PATH", value: stringValue{&socket},
			help: "the unix socket portd serves and status asks (default: " + portd.DefaultSocket + ")"})
		s.add(&option{names: []string{"policy"}, arg: "FILE", value: stringValue{&policy},
			help: "who may hold which ports (default: " + server.DefaultPolicy + "; without it only root may); reread on SIGHUP"})
		return s, func(ctx context.Context, e *env, args []string) error {
			switch {
			case len(args) == 1 && args[0] == "status":
				return portdStatus(socket, e)
			case len(args) == 0:
				return runPortd(ctx, socket, policy, e)
			}
			return usagef("portd: unexpected argument %q (usage: ustack portd [--socket PATH] [--policy FILE] [status])", args[0])
		}
	}
	return c
}

func portdStatus(socket string, e *env) error {
	hs, err := portd.Status(socket)
	if err != nil {
		return fmt.Errorf("portd status: %w", err)
	}
	return portd.WriteStatus(e.stdout, hs)
}

// loadPolicy reads the policy file; a missing default file means an empty
// policy (only root), a missing file given with --policy is an error.
func loadPolicy(path string) (*server.Policy, error) {
	given := path != ""
	if !given {
		path = server.DefaultPolicy
	}
	p, err := server.LoadPolicy(path)
	if errors.Is(err, fs.ErrNotExist) && !given {
		return &server.Policy{Source: path + " (missing)"}, nil
	}
	if err != nil {
		return nil, usagef("--policy: %v (see contrib/portd.policy.sample)", err)
	}
	return p, nil
}

func runPortd(ctx context.Context, socket, policyPath string, e *env) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("portd: needs root (CAP_NET_RAW for packet sockets, CAP_NET_ADMIN for nftables): run sudo ustack portd, or systemctl start ustack-portd")
	}
	pol, err := loadPolicy(policyPath)
	if err != nil {
		return err
	}
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(e.stderr, "ustack "+format+"\n", args...)
	}
	srv, err := server.Listen(socket, pol, logf)
	if err != nil {
		return fmt.Errorf("portd: %w", err)
	}
	defer srv.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				p, err := loadPolicy(policyPath)
				if err != nil {
					logf("portd: SIGHUP: keeping the old policy: %v", err)
					continue
				}
				srv.SetPolicy(p)
				logf("portd: SIGHUP: policy %s reloaded (%d rules, %d limits)", p.Source, len(p.Rules), len(p.Limits))
			}
		}
	}()
	logf("portd: serving on %s (policy %s, %d rules, %d limits; %d descriptors)", socket, pol.Source, len(pol.Rules), len(pol.Limits), srv.DescriptorLimit())
	return srv.Serve(ctx)
}
