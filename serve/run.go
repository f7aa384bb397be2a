package serve

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
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
}

func (p Program) config(h intercept.Handler) intercept.Config {
	return intercept.Config{Path: p.Args[0], Args: p.Args, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr, Handler: h, Logf: p.Logf}
}

// Run runs p, and everything it forks, with its IPv4 and IPv6 sockets on
// the stack, and returns how it exited. While it runs, SIGINT, SIGTERM and
// SIGHUP sent to this process are passed on to it. A program that cannot
// be started is an error that wraps exec.ErrNotFound or os.ErrNotExist
// when it was not found.
//
// Should this process be killed while the program, or anything it forked,
// still runs, or exit with background children still running, a warden
// process kills each of them at its next socket call (their network is
// gone), as a daemon's does.
func (s *Stack) Run(p Program) (*os.ProcessState, error) {
	w, err := intercept.StartWarden("ustack run")
	if err != nil {
		return nil, err
	}
	// Let go of the warden: it exits once no program it watches is left.
	defer w.Close()
	cfg := p.config(s.mgr)
	cfg.Warden = w
	proc, err := intercept.Start(cfg)
	if err != nil {
		return nil, err
	}
	ps, err := wait(proc)
	// Let data the program wrote just before exiting reach its peers:
	// through the socket layer's relays into the stack, then out of the
	// stack's connections, then (on nat) through the gateway to the host.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	s.mgr.Settle(ctx)
	s.st.Settle(ctx)
	cancel()
	return ps, err
}

// RunAttached runs p with its socket calls answered by the stack that c
// reaches, which must serve attaching (Config.Attach), and returns how it
// exited; signals are passed on as by Run. The stack is checked and asked
// before the program is launched: if it is not there (a
// *control.NotRunningError), not the user's (a *control.UntrustedError)
// or does not take the program, the error says why and the program does
// not run. If the stack stops serving the program while it runs (the
// daemon exited or was killed), the program's sockets are gone with it:
// the program is killed and the error is a *StackGoneError.
func RunAttached(ctx context.Context, c *control.Client, p Program) (*os.ProcessState, error) {
	att, err := c.OpenAttach(ctx)
	if err != nil {
		return nil, fmt.Errorf("attaching the program to stack %s: %w", c.Name, err)
	}
	defer att.Close()
	proc, listener, err := intercept.Launch(p.config(nil))
	if err != nil {
		return nil, err
	}
	err = att.Hand(ctx, listener)
	unix.Close(listener)
	if err != nil {
		// Nobody will answer its calls: it must not run.
		proc.Signal(syscall.SIGKILL)
		proc.Wait()
		return nil, fmt.Errorf("attaching the program to stack %s: %w", c.Name, err)
	}
	var killed atomic.Bool
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		select {
		case <-att.Lost():
			if !proc.Exited() {
				killed.Store(true)
				proc.Signal(syscall.SIGKILL)
			}
		case <-exited:
		}
	}()
	ps, err := wait(proc)
	if killed.Load() || ps != nil && killedBy(ps, syscall.SIGKILL) && lostBeforeSettled(att) {
		// Killed by the goroutine above, or by the daemon's warden, which
		// kills a program whose daemon is gone at its next socket call
		// (it may get there before this process sees the hang-up).
		return nil, &StackGoneError{Name: c.Name}
	}
	return ps, err
}

// killedBy reports whether ps ended by signal sig.
func killedBy(ps *os.ProcessState, sig syscall.Signal) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// lostBeforeSettled waits, for a program that was killed, until the stack
// says how serving it ended, and reports whether the stack was lost. A
// daemon that lives says done once the program and all it forked have
// exited; one that is gone has hung up. A child still running in the
// background gets neither, so the wait is bounded.
func lostBeforeSettled(att *control.Attachment) bool {
	select {
	case <-att.Settled():
	case <-time.After(2 * time.Second):
	}
	select {
	case <-att.Lost():
		return true
	default:
		return false
	}
}

// StackGoneError says that the daemon serving a program stopped serving
// it (it exited or was killed) while the program ran, and that the program
// was killed, its sockets being gone.
type StackGoneError struct{ Name string }

func (e *StackGoneError) Error() string {
	return fmt.Sprintf("the daemon %s serving the program exited; the program was killed, its sockets being gone with the daemon", e.Name)
}

// wait passes the signals that would stop this process on to the program
// and waits for it.
func wait(p *intercept.Process) (*os.ProcessState, error) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				p.Signal(sig)
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
