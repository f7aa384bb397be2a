package serve

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/nat"
	"github.com/ustack/ustack/sockets"
)

// Program is a program to run with its socket calls answered by a stack.
type Program struct {
	Args                  []string // Args[0] is looked up in PATH if it has no slash
	Stdin, Stdout, Stderr *os.File
	// Logf reports the supervisor's own trouble (nil: discard).
	Logf func(format string, args ...any)
	// Stop, if not nil, ends the program when it is closed: SIGTERM, then
	// SIGKILL if it is still there after two seconds. ustack lab exec
	// closes it when the node the program runs on goes away.
	Stop <-chan struct{}
}

func (p Program) config(h intercept.Handler) intercept.Config {
	return intercept.Config{Path: p.Args[0], Args: p.Args, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr, Handler: h, Logf: p.Logf}
}

// Run runs p, and everything it forks, with its IPv4 and IPv6 sockets on
// the stack, and returns how it exited. While it runs, SIGINT, SIGTERM and
// SIGHUP sent to this process are passed on to it. A program that cannot
// be started is an error that wraps exec.ErrNotFound or os.ErrNotExist
// when it was not found.
func (s *Stack) Run(p Program) (*os.ProcessState, error) {
	proc, err := intercept.Start(p.config(s.mgr))
	if err != nil {
		return nil, err
	}
	ps, err := wait(proc, p.Stop)
	// Let data the program wrote just before exiting reach its peers.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	s.mgr.Settle(ctx)
	cancel()
	return ps, err
}

// RunAttached runs p with its socket calls answered by the stack that c
// reaches, which must serve attaching (Config.Attach), and returns how it
// exited; signals are passed on as by Run. If the stack does not take the
// program, the program is killed before it runs and the error says why
// (a *control.NotRunningError if no stack answers).
func RunAttached(ctx context.Context, c *control.Client, p Program) (*os.ProcessState, error) {
	proc, listener, err := intercept.Launch(p.config(nil))
	if err != nil {
		return nil, err
	}
	err = c.Attach(ctx, listener)
	unix.Close(listener)
	if err != nil {
		// Nobody will answer its calls: it must not run.
		proc.Signal(syscall.SIGKILL)
		proc.Wait()
		return nil, fmt.Errorf("attaching the program to stack %s: %w", c.Name, err)
	}
	return wait(proc, p.Stop)
}

// wait passes the signals that would stop this process on to the program
// and waits for it; closing stop ends it.
func wait(p *intercept.Process, stop <-chan struct{}) (*os.ProcessState, error) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	go func() {
		var kill <-chan time.Time
		for {
			select {
			case sig := <-sigs:
				p.Signal(sig)
			case <-stop:
				stop = nil
				p.Signal(syscall.SIGTERM)
				kill = time.After(2 * time.Second)
			case <-kill:
				p.Signal(syscall.SIGKILL)
			case <-done:
				return
			}
		}
	}()
	ps, err := p.Wait()
	close(done)
	if ps == nil {
		return nil, fmt.Errorf("waiting for the program: %w", err)
	}
	return ps, nil
}

// redirectNameservers sends the programs' DNS queries, addressed to the
// host's nameservers from /etc/resolv.conf, to the stack's DNS address on
// nat (which forwards them to those nameservers, or to the configured
// upstreams). Without it a host resolver on loopback, such as
// systemd-resolved's 127.0.0.53, would be the stack's own loopback, where
// nothing answers.
func redirectNameservers(mgr *sockets.Manager, st *ustack.Stack) {
	if _, onNAT := st.Attachment().(ustack.NAT); !onNAT {
		return
	}
	servers, err := nat.HostResolvers("/etc/resolv.conf")
	if err != nil {
		return
	}
	for _, ns := range servers {
		for _, dns := range st.DNS() {
			if dns.Is4() == ns.Addr().Unmap().Is4() {
				mgr.Redirect(ns, netip.AddrPortFrom(dns, 53))
				break
			}
		}
	}
}
