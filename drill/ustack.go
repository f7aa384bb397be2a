package drill

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/observe"
	"github.com/ustack/ustack/sockets"
)

// ustackTarget runs a script against a ustack stack: a netstack whose one
// NIC is a link endpoint the runner owns, with its sockets served by
// sockets.Manager to the executor under ustack run's seccomp filter.
//
// In virtual time (the default) the stack's clock is a virtualClock that
// only the runner moves, and settle is the quiescence barrier: see its
// comment.
type ustackTarget struct {
	cfg   *Config
	opts  netstack.TCPOptions
	clock *virtualClock // nil in real time
	start atomic.Int64  // real time's zero, in Unix nanoseconds

	ns   *stack.Stack
	link *linkEndpoint
	hub  *observe.Hub
	mgr  *sockets.Manager
	exe  *ustackExecutor
	x    *execClient
	logf func(string, ...any)

	fired int // timers fired, for settle's change detection
}

const nicID = 1

// newUstackTarget builds the stack and puts the executor exe on it (a new
// one if exe is nil or cannot be reused).
func newUstackTarget(cfg *Config, logf func(string, ...any), exe *ustackExecutor) (*ustackTarget, error) {
	if err := intercept.CheckKernel(); err != nil {
		return nil, err
	}
	u := &ustackTarget{cfg: cfg, logf: logf}
	u.start.Store(time.Now().UnixNano())
	for _, kv := range cfg.Sysctls {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--sysctl %q: want KEY=VALUE", kv)
		}
		if err := u.opts.Set(strings.TrimSpace(k), v); err != nil {
			return nil, fmt.Errorf("--sysctl: %w", err)
		}
	}
	opts := u.opts
	u.hub = observe.NewHub()
	var ns *stack.Stack
	var err error
	if cfg.Realtime {
		ns, err = netstack.NewWithProbe(opts, u.hub.Probe)
	} else {
		u.clock = newVirtualClock()
		ns, err = netstack.NewClocked(opts, u.hub.Probe, u.clock, 1)
	}
	if err != nil {
		return nil, fmt.Errorf("--sysctl: %w", err)
	}
	u.ns = ns
	u.hub.Attach(ns)
	u.link = newLinkEndpoint(uint32(cfg.MTU), u.now)
	if err := u.addNICs(); err != nil {
		ns.Close()
		return nil, err
	}
	u.mgr = sockets.New(ns, u.hub.Latest, logf)
	// Virtual time's barrier needs the bookkeeping; real time needs it to
	// tell a call parked in the socket layer from one being answered.
	u.mgr.TrackActivity()
	if exe == nil || !exe.reusable() {
		if exe != nil {
			exe.close()
		}
		var err error
		if exe, err = startUstackExecutor(logf); err != nil {
			u.mgr.Close()
			ns.Close()
			return nil, err
		}
	}
	exe.handler.set(u.mgr)
	exe.x.now = u.now
	u.exe, u.x = exe, exe.x
	return u, nil
}

// addNICs gives the stack its link (with the local address and a route to
// everything) and a loopback interface.
func (u *ustackTarget) addNICs() error {
	ns := u.ns
	if err := ns.CreateNICWithOptions(nicID, u.link, stack.NICOptions{Name: "eth0"}); err != nil {
		return fmt.Errorf("creating the NIC: %s", err)
	}
	if err := ns.CreateNICWithOptions(nicID+1, loopback.New(), stack.NICOptions{Name: "lo"}); err != nil {
		return fmt.Errorf("creating the loopback NIC: %s", err)
	}
	var routes []tcpip.Route
	for _, p := range []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")} {
		if err := addAddr(ns, nicID+1, p); err != nil {
			return err
		}
		routes = append(routes, tcpip.Route{Destination: subnet(p), NIC: nicID + 1})
	}
	local := netip.PrefixFrom(u.cfg.LocalIP, u.cfg.localLen())
	if err := addAddr(ns, nicID, local); err != nil {
		return err
	}
	routes = append(routes, tcpip.Route{Destination: subnet(local), NIC: nicID})
	if u.cfg.LocalIP.Is4() {
		routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	} else {
		routes = append(routes, tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	ns.SetRouteTable(routes)
	return nil
}

func addAddr(ns *stack.Stack, nic tcpip.NICID, p netip.Prefix) error {
	proto := ipv4.ProtocolNumber
	if p.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}}
	if err := ns.AddProtocolAddress(nic, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("adding address %s: %s", p, err)
	}
	return nil
}

func subnet(p netip.Prefix) tcpip.Subnet {
	m := p.Masked()
	mask := make([]byte, m.Addr().BitLen()/8)
	for i := 0; i < m.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	sn, _ := tcpip.NewSubnet(tcpip.AddrFromSlice(m.Addr().AsSlice()), tcpip.MaskFromBytes(mask))
	return sn
}

// ustackExecutor is the executor under the seccomp filter. It outlives a
// run: the next script's calls go to the next stack's socket layer, the
// fds of the last script closed.
type ustackExecutor struct {
	proc    *intercept.Process
	x       *execClient
	ours    *os.File // our end of the control socket
	handler *managerSwitch
	dead    bool
}

// managerSwitch sends each call to the current run's socket layer.
type managerSwitch struct {
	mgr atomic.Pointer[sockets.Manager]
}

func (m *managerSwitch) set(mgr *sockets.Manager) { m.mgr.Store(mgr) }
func (m *managerSwitch) Handle(c *intercept.Call) { m.mgr.Load().Handle(c) }
func (m *managerSwitch) MayPark(nr int) bool      { return m.mgr.Load().MayPark(nr) }

// startUstackExecutor runs the executor under the seccomp filter.
func startUstackExecutor(logf func(string, ...any)) (*ustackExecutor, error) {
	ours, theirs, err := controlPair()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		ours.Close()
		theirs.Close()
		return nil, err
	}
	h := &managerSwitch{}
	p, err := intercept.Start(intercept.Config{
		Path:    self,
		Args:    []string{"ustack-drill-executor"},
		Env:     executorEnviron(),
		Stdin:   theirs,
		Stdout:  os.Stderr,
		Stderr:  os.Stderr,
		Handler: h,
		Logf:    logf,
	})
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("starting the executor: %w", err)
	}
	e := &ustackExecutor{proc: p, ours: ours, handler: h, x: newExecClient(int(ours.Fd()), func() int64 { return 0 })}
	if err := e.x.ready(); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// reusable reports whether the executor can serve another script: it is
// alive and no call of the last one is still under way.
func (e *ustackExecutor) reusable() bool { return !e.dead && len(e.x.calls) == 0 }

// release readies the executor for the next script, or ends it.
func (e *ustackExecutor) release() {
	if !e.reusable() || e.x.reset() != nil {
		e.close()
	}
}

func (e *ustackExecutor) close() {
	if e.dead {
		return
	}
	e.dead = true
	e.ours.Close() // the executor reads EOF and exits
	done := make(chan struct{})
	go func() { e.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		e.proc.Signal(unix.SIGKILL)
		<-done
	}
}

// controlPair is the executor's control socket: ours (non-blocking) and
// its (to become its fd 0).
func controlPair() (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	unix.SetNonblock(fds[0], true)
	return os.NewFile(uintptr(fds[0]), "drill-control"), os.NewFile(uintptr(fds[1]), "drill-executor"), nil
}

func (u *ustackTarget) name() string          { return "ustack" }
func (u *ustackTarget) virtual() bool         { return u.clock != nil }
func (u *ustackTarget) exec() *execClient     { return u.x }
func (u *ustackTarget) inject(b []byte) error { return u.link.inject(b) }

func (u *ustackTarget) now() int64 {
	if u.clock != nil {
		return u.clock.elapsed().Microseconds()
	}
	return (time.Now().UnixNano() - u.start.Load()) / int64(time.Microsecond)
}

// startClock starts real time over; virtual time has not moved yet.
func (u *ustackTarget) startClock() {
	if u.clock == nil {
		u.start.Store(time.Now().UnixNano())
	}
}

func (u *ustackTarget) nextDeadline() (int64, bool) {
	if u.clock == nil {
		return 0, false
	}
	d, ok := u.clock.nextDeadline()
	return d.Microseconds(), ok
}

func (u *ustackTarget) advanceTo(t int64) {
	u.clock.setNow(time.Duration(t) * time.Microsecond)
	for u.clock.fireOne() {
		u.fired++
	}
}

func (u *ustackTarget) outbound(until time.Time) []*wire {
	if u.clock == nil {
		u.link.waitOut(until)
	}
	return u.link.take()
}

// seccompWait is the kernel function a thread sleeps in while its system
// call waits for the supervisor's answer (compilers may suffix the name:
// seccomp_do_user_notification.isra.0).
const seccompWait = "seccomp_do_user_notification"

// blocked: the thread sleeps in its call, and if that sleep is a wait for
// the socket layer's answer, the layer holds the call parked.
func (u *ustackTarget) blocked(c *pending) bool {
	if !sleepingIn(c.tid, c.nr) {
		return false
	}
	if strings.HasPrefix(threadWchan(c.tid), seccompWait) {
		return u.mgr.Holds(c.tid)
	}
	return true
}

// settle is the quiescence barrier of virtual time. Time stands still while
// it runs; it returns when nothing can happen any more until time moves, a
// packet arrives or the script makes a call:
//
//   - the timers due now have fired (on this goroutine, in order);
//   - netstack's TCP processors have handled every segment queued to
//     them (stack.Pause returns once they are all idle);
//   - the socket layer is quiet: none of its goroutines runs and none of
//     their waits is ready to end (sockets.Manager.Quiet, which judges each
//     wait by what would end it: data in a kernel buffer, a netstack
//     notification, a closed channel);
//   - every call of the executor has returned or sleeps in its system call
//     waiting for the network, not for the socket layer's answer (unless
//     the layer holds it parked), seen in /proc;
//   - and a whole round of these checks saw no change: no packet sent, no
//     response, no goroutine of the layer starting, parking, resuming or
//     ending (a call's handler that began after the layer was found quiet
//     would otherwise go unseen).
//
// It waits on those events (the layer's Changes, the executor's socket),
// never on a fixed sleep; a millisecond's poll stands in only for a thread
// of the executor that is between two states.
func (u *ustackTarget) settle() error {
	if u.clock == nil {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			return fmt.Errorf("the stack did not settle within 30s of wall time (a bug in ustack drill: %s)", u.busyReport())
		}
		changes := u.mgr.Changes()
		sent, seen, fired := u.link.count(), u.x.seen, u.fired
		for u.clock.fireOne() {
			u.fired++
		}
		u.ns.Pause()
		u.ns.Resume()
		if err := u.x.drain(); err != nil {
			return err
		}
		if !u.mgr.Quiet() {
			select {
			case <-u.mgr.Changes():
			case <-time.After(time.Millisecond):
			}
			continue
		}
		busy := false
		for _, c := range u.x.outstanding() {
			if !u.blocked(c) {
				busy = true
				break
			}
		}
		if busy {
			u.x.wait(time.Millisecond)
			continue
		}
		if err := u.x.drain(); err != nil {
			return err
		}
		if isClosedChan(changes) || sent != u.link.count() || seen != u.x.seen || fired != u.fired {
			continue
		}
		return nil
	}
}

// busyReport says what keeps the stack from settling.
func (u *ustackTarget) busyReport() string {
	var parts []string
	if !u.mgr.Quiet() {
		parts = append(parts, "the socket layer is busy: "+u.mgr.ActivityReport())
	}
	for _, c := range u.x.outstanding() {
		nr, ok := threadSyscall(c.tid)
		parts = append(parts, fmt.Sprintf("%s on thread %d (syscall %d %v, state %c, wchan %s)", c.req.Op, c.tid, nr, ok,
			threadState(c.tid), threadWchan(c.tid)))
	}
	return strings.Join(parts, "; ")
}

func isClosedChan(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// command applies a script's shell command to the stack: sysctl settings
// become the stack's TCP options; anything else cannot run against a
// user-level stack.
func (u *ustackTarget) command(cmd string) error {
	settings, err := sysctlCommand(cmd)
	if err != nil {
		return err
	}
	for _, kv := range settings {
		if fixed, ok := fixedSysctls[kv[0]]; ok {
			if strings.TrimSpace(kv[1]) != fixed {
				return fmt.Errorf("shell command %q: ustack cannot set %s to %s: it always behaves as %s=%s", cmd, kv[0], kv[1], kv[0], fixed)
			}
			continue
		}
		if err := u.opts.Set(kv[0], kv[1]); err != nil {
			return fmt.Errorf("shell command %q: %w (ustack maps only the sysctls it has: %s)", cmd, err,
				strings.Join(netstack.SysctlKeys(), ", "))
		}
	}
	return u.opts.Apply(u.ns)
}

// close releases the stack; the executor stays for the next run if it can
// (the runner closes it for good), after the script's fds are closed.
func (u *ustackTarget) close() error {
	u.exe.release()
	u.mgr.Close()
	u.ns.Close()
	u.ns.Wait()
	return nil
}

// linkEndpoint is the stack's NIC: packets the runner injects go up into
// the stack; packets the stack sends are kept, stamped with the clock.
type linkEndpoint struct {
	*channel.Endpoint
	now func() int64

	mu     sync.Mutex
	out    []*wire
	sent   int
	notify chan struct{} // closed and replaced when a packet is kept
}

func newLinkEndpoint(mtu uint32, now func() int64) *linkEndpoint {
	return &linkEndpoint{Endpoint: channel.New(1, mtu, ""), now: now, notify: make(chan struct{})}
}

// WritePackets implements stack.LinkEndpoint.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		v := pkt.ToView()
		b := append([]byte(nil), v.AsSlice()...)
		v.Release()
		at := e.now()
		w, err := parseWire(b)
		if err != nil {
			continue // not IP: nothing a script can expect
		}
		w.at = at
		e.mu.Lock()
		e.out = append(e.out, w)
		e.sent++
		close(e.notify)
		e.notify = make(chan struct{})
		e.mu.Unlock()
		n++
	}
	return n, nil
}

func (e *linkEndpoint) inject(b []byte) error {
	proto := ipv4.ProtocolNumber
	if len(b) > 0 && b[0]>>4 == 6 {
		proto = ipv6.ProtocolNumber
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	e.Endpoint.InjectInbound(proto, pkt)
	pkt.DecRef()
	return nil
}

func (e *linkEndpoint) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sent
}

func (e *linkEndpoint) take() []*wire {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.out
	e.out = nil
	return out
}

// waitOut waits until a packet is kept or until passes.
func (e *linkEndpoint) waitOut(until time.Time) {
	e.mu.Lock()
	if len(e.out) > 0 {
		e.mu.Unlock()
		return
	}
	ch := e.notify
	e.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}
