package drill

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Result is the outcome of one script on one stack.
type Result struct {
	Path   string
	Target string // "ustack" or "kernel"
	// Err is the first failure, formatted as packetdrill does (the script
	// line, what was expected and what happened); nil if the script passed.
	Err error
	// KnownDifference is the reason the script gives for ustack behaving
	// otherwise than the kernel, when it is marked so and is run on ustack.
	KnownDifference string
	// Skipped says why the script did not run.
	Skipped string
	// Log is the run's trace (with Verbose): every packet and call, in
	// script time.
	Log []string
	// ScriptTime is how far the script's clock went, in µs.
	ScriptTime int64
	// Wall is how long the run took.
	Wall time.Duration
}

// Status is one word for the outcome: pass, FAIL, known-difference,
// unexpected-pass (marked as a known difference, yet passed), skipped.
func (r *Result) Status() string {
	switch {
	case r.Skipped != "":
		return "skipped"
	case r.KnownDifference != "" && r.Err != nil:
		return "known-difference"
	case r.KnownDifference != "":
		return "unexpected-pass"
	case r.Err != nil:
		return "FAIL"
	}
	return "pass"
}

// OK reports whether the outcome is what the script says it should be.
func (r *Result) OK() bool {
	s := r.Status()
	return s == "pass" || s == "known-difference" || s == "skipped"
}

// Runner runs scripts, one at a time. It keeps ustack's executor from one
// script to the next (a new stack each time), which makes a run take
// milliseconds.
type Runner struct {
	cmdline Config
	logf    func(string, ...any)
	exe     *ustackExecutor
}

// NewRunner returns a runner with the command line's configuration
// (DefaultConfig plus Set); logf reports the socket layer's trouble.
func NewRunner(cmdline Config, logf func(string, ...any)) *Runner {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Runner{cmdline: cmdline, logf: logf}
}

// Close ends what the runner keeps between runs.
func (rn *Runner) Close() {
	if rn.exe != nil {
		rn.exe.close()
		rn.exe = nil
	}
}

// Run runs the script at path on target ("ustack" or "kernel") with the
// command line's configuration cmdline (DefaultConfig plus Set).
func Run(path, targetName string, cmdline Config, logf func(string, ...any)) *Result {
	rn := NewRunner(cmdline, logf)
	defer rn.Close()
	return rn.Run(path, targetName)
}

// Run runs the script at path on target, "ustack" or "kernel".
func (rn *Runner) Run(path, targetName string) *Result {
	cmdline, logf := rn.cmdline, rn.logf
	res := &Result{Path: path, Target: targetName}
	start := time.Now()
	defer func() { res.Wall = time.Since(start) }()
	s, err := ParseFile(path)
	if err != nil {
		res.Err = err
		return res
	}
	if targetName == "ustack" && len(s.KnownDifferences) > 0 {
		res.KnownDifference = strings.Join(s.KnownDifferences, "; ")
	}
	if targetName == "ustack" && s.KernelOnly != "" {
		res.Skipped = "kernel only: " + s.KernelOnly
		return res
	}
	cfg, err := merge(s.Options, cmdline)
	if err != nil {
		res.Err = fmt.Errorf("%s: %w", path, err)
		return res
	}
	var t target
	switch targetName {
	case "ustack":
		var u *ustackTarget
		u, err = newUstackTarget(&cfg, logf, rn.exe)
		if err == nil {
			rn.exe = u.exe
			t = u
		}
	case "kernel":
		t, err = newKernelTarget(&cfg, logf)
	default:
		err = fmt.Errorf("unknown stack %q (ustack or kernel)", targetName)
	}
	if err != nil {
		var skip *skipError
		if errors.As(err, &skip) {
			res.Skipped = skip.reason
			return res
		}
		res.Err = fmt.Errorf("%s: %w", path, err)
		return res
	}
	r := &run{s: s, cfg: &cfg, t: t, x: t.exec(), socks: map[int]*sock{}, nextEphemeral: 40000}
	res.Err = r.run()
	if err := t.close(); err != nil && res.Err == nil {
		res.Err = fmt.Errorf("%s: %w", path, err)
	}
	res.Log, res.ScriptTime = r.log, r.scriptNow
	return res
}

// skipError means a stack cannot run here (no root for the kernel's).
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

// run is the state of one script's run.
type run struct {
	s   *Script
	cfg *Config
	t   target
	x   *execClient

	log       []string
	scriptNow int64

	last          *Event
	lastTime      int64 // the last event's scheduled time
	lastAbsolute  int64 // the last absolute time written
	blocking      *pending
	blockingEvent *Event
	blockingStart int64
	blockingEnd   int64

	socks         map[int]*sock
	conns         []*conn
	sut           *conn // the connection that packets without ports concern
	listener      *sock
	nextEphemeral uint16
	queue         []*wire // packets sent and not yet matched
}

// sock is a socket the script made.
type sock struct {
	fd        int
	domain    int
	proto     Protocol
	localPort uint16 // bound port, 0 if none
	conn      *conn
}

// conn is a connection (or a datagram flow) between the stack and the
// scripted peer, with the mapping between script and live values.
type conn struct {
	proto   Protocol
	passive bool
	local   netip.AddrPort // the stack's side; port 0 until seen
	remote  netip.AddrPort

	isnKnown           bool
	scriptISN, liveISN uint32

	tsMap         map[uint32]uint32
	tsKnown       bool
	tsFirstScript uint32
	tsFirstLive   uint32
	// tsShown is the live TS val shown as 0 while the script has named
	// none (so that reports do not carry the stack's random offset).
	tsShown    uint32
	tsShownSet bool
}

func (r *run) logf(format string, args ...any) {
	if r.cfg.Verbose {
		r.log = append(r.log, fmt.Sprintf(format, args...))
	}
}

// lineErr formats an error at a script line as packetdrill does.
func (r *run) lineErr(line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", r.s.Path, line, fmt.Sprintf(format, args...))
}

func (r *run) run() error {
	for _, path := range r.cfg.InitScripts {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%s: init script: %w", r.s.Path, err)
		}
		if err := r.t.command(string(b)); err != nil {
			return fmt.Errorf("%s: error executing init script '%s': %w", r.s.Path, path, err)
		}
	}
	if c := r.s.Init; c != nil {
		if err := r.t.command(c.Text); err != nil {
			return fmt.Errorf("%s: error executing init command: %w", r.s.Path, err)
		}
	}
	r.t.startClock()
	err := r.events()
	if c := r.s.Cleanup; c != nil {
		if cerr := r.t.command(c.Text); cerr != nil && err == nil {
			err = fmt.Errorf("%s: error executing cleanup command: %w", r.s.Path, cerr)
		}
	}
	return err
}

func (r *run) events() error {
	if first := r.s.Events[0]; (first.Time == AbsoluteTime || first.Time == RelativeTime) && first.Usecs != 0 {
		return r.lineErr(first.Line, "first event should be at time 0")
	}
	for _, e := range r.s.Events {
		// What the last event set off (a blocking call returning) is seen
		// before this one starts, so that reports come in one order.
		if r.t.virtual() {
			if err := r.t.settle(); err != nil {
				return err
			}
		}
		if err := r.checkBlocking(); err != nil {
			return err
		}
		if e.Time == AbsoluteTime || e.Time == AbsoluteRangeTime {
			if r.last != nil && e.Usecs < r.lastAbsolute {
				return r.lineErr(e.Line, "time goes backward in script from %d usec to %d usec", r.lastAbsolute, e.Usecs)
			}
			r.lastAbsolute = e.Usecs
		}
		at, end := r.eventTime(e)
		var err error
		switch {
		case e.Packet != nil && e.Packet.Dir == Inbound:
			err = r.inbound(e, at)
		case e.Packet != nil:
			err = r.outboundEvent(e, at, end)
		case e.Syscall != nil:
			err = r.syscall(e, at)
		case e.Command != nil:
			if err = r.waitFor(e, at); err == nil {
				if cerr := r.t.command(e.Command.Text); cerr != nil {
					err = r.lineErr(e.Line, "error executing command: %v", cerr)
				}
			}
		case e.Code != nil:
			err = r.lineErr(e.Line, "%%{ code }%% blocks are not supported (no Python interpreter runs against the stack); check tcp_info with getsockopt(FD, SOL_TCP, TCP_INFO, {tcpi_NAME=VALUE, ...}, ...) instead")
		}
		if err != nil {
			return err
		}
		r.last, r.lastTime = e, at
		r.scriptNow = r.t.now()
	}
	// A blocking call that returned by now is checked; one still blocked
	// is left, as packetdrill leaves it.
	if r.t.virtual() {
		if err := r.t.settle(); err != nil {
			return err
		}
	}
	return r.checkBlocking()
}

// eventTime is when the event is due, in µs of script time, and the end of
// its range: relative times count from now, or, for an inbound packet
// following an inbound packet, from that packet's scheduled time.
func (r *run) eventTime(e *Event) (at, end int64) {
	switch e.Time {
	case AbsoluteTime:
		return e.Usecs, e.Usecs
	case AbsoluteRangeTime:
		return e.Usecs, e.EndUsecs
	}
	offset := r.t.now()
	if r.last != nil && r.last.Packet != nil && r.last.Packet.Dir == Inbound && e.Packet != nil && e.Packet.Dir == Inbound {
		offset = r.lastTime
	}
	switch e.Time {
	case RelativeRangeTime:
		return offset + e.Usecs, offset + e.EndUsecs
	case AnyTime:
		return offset, offset
	}
	return offset + e.Usecs, offset + e.Usecs
}

// tolerance for an event due at t: --tolerance_usecs, or
// --tolerance_percent of the time since the last event if that is more.
func (r *run) tolerance(t int64) int64 {
	tol := r.cfg.ToleranceUsecs
	if r.last != nil {
		if dyn := int64(r.cfg.TolerancePercent / 100 * float64(t-r.lastTime)); dyn > tol {
			tol = dyn
		}
	}
	return tol
}

func secs(us int64) string { return fmt.Sprintf("%.6f", float64(us)/1e6) }

// waitFor brings time to an event's due time t and checks that it is not
// past it.
func (r *run) waitFor(e *Event, t int64) error {
	if err := r.waitUntil(t); err != nil {
		return err
	}
	if now, tol := r.t.now(), r.tolerance(t); now > t+tol {
		return r.lineErr(e.Line, "timing error: expected %s at %s sec but happened at %s sec; tolerance %s sec",
			eventKind(e), secs(t), secs(now), secs(tol))
	}
	return nil
}

func eventKind(e *Event) string {
	switch {
	case e.Packet != nil && e.Packet.Dir == Inbound:
		return "inbound packet"
	case e.Packet != nil:
		return "outbound packet"
	case e.Syscall != nil:
		return "system call start"
	case e.Command != nil:
		return "command"
	}
	return "data collection for code"
}

// waitUntil moves time to t. In virtual time the clock steps from timer to
// timer, the stack settling at each, then to t; in real time it sleeps.
func (r *run) waitUntil(t int64) error {
	if !r.t.virtual() {
		if d := time.Duration(t-r.t.now()) * time.Microsecond; d > 0 {
			time.Sleep(d)
		}
		return r.x.drain()
	}
	for {
		if err := r.t.settle(); err != nil {
			return err
		}
		d, ok := r.t.nextDeadline()
		if !ok || d > t {
			break
		}
		r.t.advanceTo(d)
	}
	if t > r.t.now() {
		r.t.advanceTo(t)
	}
	return r.t.settle()
}

// checkBlocking checks a blocking call that has returned: its result and
// that it returned when the script said.
func (r *run) checkBlocking() error {
	c := r.blocking
	if c == nil {
		return nil
	}
	if err := r.x.drain(); err != nil {
		return err
	}
	if !c.done {
		return nil
	}
	e := r.blockingEvent
	r.blocking, r.blockingEvent = nil, nil
	if err := r.checkResult(e, c); err != nil {
		return err
	}
	tol := r.cfg.ToleranceUsecs
	if dyn := int64(r.cfg.TolerancePercent / 100 * float64(r.blockingEnd-r.blockingStart)); dyn > tol {
		tol = dyn
	}
	if c.doneAt < r.blockingEnd-tol || c.doneAt > r.blockingEnd+tol {
		return r.lineErr(e.Line, "timing error: expected system call return at %s sec but happened at %s sec; tolerance %s sec",
			secs(r.blockingEnd), secs(c.doneAt), secs(tol))
	}
	return nil
}
