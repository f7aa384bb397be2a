package netstack

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/cc"
	"github.com/ustack/ustack/internal/inline"
)

// Defaults chosen for throughput on fast in-memory and local links: reno,
// SACK and RACK on, Nagle off, and buffers large enough for a few MiB of
// bandwidth-delay product (netstack's own 4 MiB maximum stalls on fast paths).
const (
	// DefaultCongestionControl is reno, ustack's (package cc), as before:
	// the pinned netstack's own CUBIC could bring cwnd to 0 after a loss
	// and never send again (BENCHMARKS.md, "CUBIC stall under loss"); cc's
	// cubic, which replaces it by name, does not, but is not the default.
	DefaultCongestionControl = "reno"
	DefaultMinRTO            = 200 * time.Millisecond
	DefaultTimeWait          = 60 * time.Second
	DefaultInitialCwnd       = tcp.InitialCwnd // RFC 6928's 10 segments
	// DefaultDelayedAck is Linux's shortest delayed-ACK time (TCP_DELACK_MIN):
	// a connection answering what it receives (a request and its reply)
	// sends the acknowledgement with the reply instead of a segment of its
	// own, which halves the segments of such exchanges.
	DefaultDelayedAck = 40 * time.Millisecond
	// MaxDelayedAck is Linux's longest (TCP_DELACK_MAX). A longer wait
	// would outlast the peer's tail-loss probe and minimum RTO, which
	// would resend what is only waiting for its acknowledgement.
	MaxDelayedAck = 200 * time.Millisecond
)

var errDelayedAck = fmt.Errorf("want 0 or a duration of at most %v (Linux's longest delayed ACK; a longer one makes the peer resend)", MaxDelayedAck)

var (
	DefaultSendBuffer    = BufferRange{Min: 4 << 10, Default: 1 << 20, Max: 6 << 20}
	DefaultReceiveBuffer = BufferRange{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
)

// BufferRange is a socket buffer size range in bytes, like tcp_rmem/tcp_wmem.
type BufferRange struct{ Min, Default, Max int }

func (b BufferRange) String() string { return fmt.Sprintf("%d %d %d", b.Min, b.Default, b.Max) }

func (b BufferRange) orDefault(d BufferRange) BufferRange {
	if b == (BufferRange{}) {
		return d
	}
	return b
}

// TCPOptions are the stack-wide TCP settings. The zero value means the
// defaults above; every field can also be set by key with Set, which is what
// --sysctl and USTACK_SYSCTL use.
type TCPOptions struct {
	CongestionControl string // a name package cc registered; "" is DefaultCongestionControl
	NoSACK            bool   // turn selective acknowledgements off
	NoRACK            bool   // use classic duplicate-ACK loss detection instead of RACK
	Nagle             bool   // delay small segments (netstack's TCPDelayEnabled)
	NoModerateRcvBuf  bool   // turn receive-buffer auto-tuning off
	SendBuffer        BufferRange
	ReceiveBuffer     BufferRange
	MinRTO            time.Duration // 0 is 200ms
	// DelayedAck is the longest an acknowledgement waits for data to carry
	// it while data flows both ways (netstack's TCPDelayedAckOption with
	// ustack's patch). 0 is DefaultDelayedAck; negative acknowledges at once.
	DelayedAck time.Duration
	TimeWait   time.Duration // 0 is 60s
	// TimeWaitReuse is Linux's tcp_tw_reuse: "0" never gives a connect a
	// local port whose earlier connection to the same peer is in
	// TIME-WAIT, "1" does (ending that TIME-WAIT), "2" does only over
	// loopback. "" is "2", Linux's default.
	TimeWaitReuse string
	// InitialCwnd is the congestion window, in segments, a connection
	// starts with and restarts with after an idle RTO (Linux sets it per
	// route: ip route ... initcwnd N). 0 is DefaultInitialCwnd.
	InitialCwnd int
	// SynLinearTimeouts is Linux's tcp_syn_linear_timeouts: how many
	// retransmissions of a connect's SYN come 1 s apart before the
	// timeouts start doubling. 0 is DefaultSynLinearTimeouts; negative
	// doubles from the first.
	SynLinearTimeouts int
	// QueuedProcessing hands every received segment to one of netstack's
	// processor goroutines, the pinned netstack's way. By default a
	// segment for an established connection whose lock is free is
	// processed on the goroutine that delivered it while a relay runs a
	// small write to completion (package inline; netstack patch 0023),
	// which saves a goroutine wake-up per segment.
	QueuedProcessing bool
	// NoProbe leaves netstack's TCP probe out. The probe feeds control-block
	// samples to traces and sequence numbers to ss -i, but netstack copies
	// each endpoint's state to the heap on every received segment while it
	// is installed, listened to or not (see BENCHMARKS.md).
	NoProbe bool
}

type sysctl struct {
	aliases []string // Linux names accepted for the same setting
	help    string
	set     func(o *TCPOptions, v string) error
	get     func(o *TCPOptions) string
}

// sysctls maps each key to its setter. Keys are ustack's; the Linux
// net.ipv4.* names are accepted as aliases where Linux has the same knob.
var sysctls = map[string]sysctl{
	"tcp.cc": {[]string{"net.ipv4.tcp_congestion_control"}, "congestion control: a name ustack version lists (reno, newreno, cubic, ...)",
		func(o *TCPOptions, v string) error {
			if err := (&TCPOptions{CongestionControl: v}).validateCC(); err != nil {
				return err
			}
			o.CongestionControl = v
			return nil
		},
		func(o *TCPOptions) string { return o.cc() }},
	"tcp.sack": {[]string{"net.ipv4.tcp_sack"}, "selective acknowledgements: 1 or 0",
		func(o *TCPOptions, v string) error { return setNegBool(&o.NoSACK, v) },
		func(o *TCPOptions) string { return boolStr(!o.NoSACK) }},
	"tcp.rack": {[]string{"net.ipv4.tcp_recovery"}, "RACK loss detection: 1 or 0",
		func(o *TCPOptions, v string) error { return setNegBool(&o.NoRACK, v) },
		func(o *TCPOptions) string { return boolStr(!o.NoRACK) }},
	"tcp.nagle": {nil, "Nagle's algorithm: 1 or 0",
		func(o *TCPOptions, v string) error { return setBool(&o.Nagle, v) },
		func(o *TCPOptions) string { return boolStr(o.Nagle) }},
	"tcp.inline_processing": {nil, "process a received segment on the goroutine that delivered it while a relay runs a small write to completion and the connection is free, instead of waking a processor goroutine: 1 or 0",
		func(o *TCPOptions, v string) error { return setNegBool(&o.QueuedProcessing, v) },
		func(o *TCPOptions) string { return boolStr(!o.QueuedProcessing) }},
	"tcp.moderate_rcvbuf": {[]string{"net.ipv4.tcp_moderate_rcvbuf"}, "receive buffer auto-tuning: 1 or 0",
		func(o *TCPOptions, v string) error { return setNegBool(&o.NoModerateRcvBuf, v) },
		func(o *TCPOptions) string { return boolStr(!o.NoModerateRcvBuf) }},
	"tcp.wmem": {[]string{"net.ipv4.tcp_wmem"}, `send buffer "MIN DEFAULT MAX" in bytes`,
		func(o *TCPOptions, v string) error { return setRange(&o.SendBuffer, v) },
		func(o *TCPOptions) string { return o.SendBuffer.orDefault(DefaultSendBuffer).String() }},
	"tcp.rmem": {[]string{"net.ipv4.tcp_rmem"}, `receive buffer "MIN DEFAULT MAX" in bytes`,
		func(o *TCPOptions, v string) error { return setRange(&o.ReceiveBuffer, v) },
		func(o *TCPOptions) string { return o.ReceiveBuffer.orDefault(DefaultReceiveBuffer).String() }},
	"tcp.min_rto": {nil, "minimum retransmission timeout, e.g. 200ms",
		func(o *TCPOptions, v string) error {
			var d time.Duration
			if err := setDuration(&d, v); err != nil {
				return err
			}
			if d > tcp.MaxRTO {
				return fmt.Errorf("want at most %v (the maximum RTO)", tcp.MaxRTO)
			}
			o.MinRTO = d
			return nil
		},
		func(o *TCPOptions) string { return orDur(o.MinRTO, DefaultMinRTO).String() }},
	"tcp.probe": {nil, "netstack's TCP probe (control-block samples for trace and ss -i): 1 or 0",
		func(o *TCPOptions, v string) error { return setNegBool(&o.NoProbe, v) },
		func(o *TCPOptions) string { return boolStr(!o.NoProbe) }},
	"tcp.delayed_ack": {nil, "longest wait of an acknowledgement for data to carry it, when data flows both ways, e.g. 40ms; 0 acknowledges at once",
		func(o *TCPOptions, v string) error {
			if v == "0" {
				o.DelayedAck = -1
				return nil
			}
			var d time.Duration
			if err := setDuration(&d, v); err != nil {
				return errDelayedAck
			}
			if d > MaxDelayedAck {
				return errDelayedAck
			}
			o.DelayedAck = d
			return nil
		},
		func(o *TCPOptions) string { return o.delayedAck().String() }},
	"tcp.syn_linear_timeouts": {[]string{"net.ipv4.tcp_syn_linear_timeouts"}, "retransmissions of a connect's SYN 1 s apart before the timeouts double; 0 doubles from the first",
		func(o *TCPOptions, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > tcp.MaxSynLinearTimeouts {
				return errSynLinearTimeouts
			}
			o.SynLinearTimeouts = n
			if n == 0 {
				o.SynLinearTimeouts = -1
			}
			return nil
		},
		func(o *TCPOptions) string { return strconv.Itoa(o.synLinearTimeouts()) }},
	"tcp.time_wait": {nil, "TIME-WAIT duration, e.g. 60s",
		func(o *TCPOptions, v string) error { return setDuration(&o.TimeWait, v) },
		func(o *TCPOptions) string { return orDur(o.TimeWait, DefaultTimeWait).String() }},
	"tcp.initial_cwnd": {nil, "initial congestion window in segments (RFC 5681's IW; 1 as in 1999, 10 as today)",
		func(o *TCPOptions, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxInitialCwnd {
				return errInitialCwnd
			}
			o.InitialCwnd = n
			return nil
		},
		func(o *TCPOptions) string { return strconv.Itoa(o.initialCwnd()) }},
	"tcp.tw_reuse": {[]string{"net.ipv4.tcp_tw_reuse"}, "a connect may take a port whose connection to the same peer is in TIME-WAIT: 0 no, 1 yes, 2 over loopback only",
		func(o *TCPOptions, v string) error {
			if _, ok := timeWaitReuse[v]; !ok {
				return fmt.Errorf("want 0, 1 or 2")
			}
			o.TimeWaitReuse = v
			return nil
		},
		func(o *TCPOptions) string { return o.twReuse() }},
}

// timeWaitReuse maps tcp.tw_reuse's values to netstack's.
var timeWaitReuse = map[string]tcpip.TCPTimeWaitReuseOption{
	"0": tcpip.TCPTimeWaitReuseDisabled,
	"1": tcpip.TCPTimeWaitReuseGlobal,
	"2": tcpip.TCPTimeWaitReuseLoopbackOnly,
}

// maxInitialCwnd bounds tcp.initial_cwnd: far above any IW in use, low
// enough that a typo does not open with a flood.
const maxInitialCwnd = 1000

var errInitialCwnd = fmt.Errorf("want a number of segments from 1 to %d", maxInitialCwnd)

func (o *TCPOptions) initialCwnd() int {
	if o.InitialCwnd == 0 {
		return DefaultInitialCwnd
	}
	return o.InitialCwnd
}

// delayedAck is the delayed-ACK time in force, 0 for none.
func (o *TCPOptions) delayedAck() time.Duration {
	switch {
	case o.DelayedAck < 0:
		return 0
	case o.DelayedAck == 0:
		return DefaultDelayedAck
	}
	return o.DelayedAck
}

// synLinearTimeouts is the count in force.
func (o *TCPOptions) synLinearTimeouts() int {
	switch {
	case o.SynLinearTimeouts < 0:
		return 0
	case o.SynLinearTimeouts == 0:
		return tcp.DefaultSynLinearTimeouts
	}
	return o.SynLinearTimeouts
}

var errSynLinearTimeouts = fmt.Errorf("want a number of retransmissions from 0 to %d", tcp.MaxSynLinearTimeouts)

func (o *TCPOptions) twReuse() string {
	if o.TimeWaitReuse == "" {
		return "2"
	}
	return o.TimeWaitReuse
}

// Set sets one option by key (see SysctlHelp), e.g. Set("tcp.sack", "0").
func (o *TCPOptions) Set(key, value string) error {
	s, ok := lookupSysctl(key)
	if !ok {
		return fmt.Errorf("unknown key %q (known: %s)", key, strings.Join(SysctlKeys(), ", "))
	}
	if err := s.set(o, strings.TrimSpace(value)); err != nil {
		return fmt.Errorf("%s=%s: %w", key, value, err)
	}
	return nil
}

// Get returns the effective value of one option.
func (o *TCPOptions) Get(key string) (string, bool) {
	s, ok := lookupSysctl(key)
	if !ok {
		return "", false
	}
	return s.get(o), true
}

func lookupSysctl(key string) (sysctl, bool) {
	if s, ok := sysctls[key]; ok {
		return s, true
	}
	for _, s := range sysctls {
		for _, a := range s.aliases {
			if a == key {
				return s, true
			}
		}
	}
	return sysctl{}, false
}

// SysctlKeys lists the accepted keys, sorted.
func SysctlKeys() []string {
	keys := make([]string, 0, len(sysctls))
	for k := range sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SysctlHelp describes every key with its default, one per line.
func SysctlHelp() string {
	var b strings.Builder
	var zero TCPOptions
	for _, k := range SysctlKeys() {
		s := sysctls[k]
		alias := ""
		if len(s.aliases) > 0 {
			alias = " (also " + strings.Join(s.aliases, ", ") + ")"
		}
		fmt.Fprintf(&b, "  %-20s %s; default %q%s\n", k, s.help, s.get(&zero), alias)
	}
	return b.String()
}

// Validate reports the first invalid option.
func (o *TCPOptions) Validate() error {
	if err := o.validateCC(); err != nil {
		return fmt.Errorf("tcp.cc=%s: %w", o.CongestionControl, err)
	}
	for _, r := range []struct {
		key string
		b   BufferRange
	}{{"tcp.wmem", o.SendBuffer}, {"tcp.rmem", o.ReceiveBuffer}} {
		if r.b == (BufferRange{}) {
			continue
		}
		if r.b.Min <= 0 || r.b.Min > r.b.Default || r.b.Default > r.b.Max {
			return fmt.Errorf("%s=%q: want MIN <= DEFAULT <= MAX, all positive", r.key, r.b.String())
		}
	}
	if _, ok := timeWaitReuse[o.twReuse()]; !ok {
		return fmt.Errorf("tcp.tw_reuse=%q: want 0, 1 or 2", o.TimeWaitReuse)
	}
	if o.InitialCwnd < 0 || o.InitialCwnd > maxInitialCwnd { // 0 is the default
		return fmt.Errorf("tcp.initial_cwnd=%d: %w", o.InitialCwnd, errInitialCwnd)
	}
	if o.MinRTO < 0 || o.TimeWait < 0 {
		return fmt.Errorf("tcp.min_rto and tcp.time_wait must not be negative")
	}
	if o.DelayedAck > MaxDelayedAck {
		return fmt.Errorf("tcp.delayed_ack=%v: %w", o.DelayedAck, errDelayedAck)
	}
	if o.SynLinearTimeouts > tcp.MaxSynLinearTimeouts {
		return fmt.Errorf("tcp.syn_linear_timeouts=%d: %w", o.SynLinearTimeouts, errSynLinearTimeouts)
	}
	if o.MinRTO > tcp.MaxRTO {
		return fmt.Errorf("tcp.min_rto=%v: want at most %v (the maximum RTO)", o.MinRTO, tcp.MaxRTO)
	}
	return nil
}

func (o *TCPOptions) cc() string {
	if o.CongestionControl == "" {
		return DefaultCongestionControl
	}
	return o.CongestionControl
}

func (o *TCPOptions) validateCC() error {
	return cc.Check(o.cc())
}

func (o *TCPOptions) apply(s *stack.Stack) error {
	sack := tcpip.TCPSACKEnabled(!o.NoSACK)
	recovery := tcpip.TCPRACKLossDetection
	if o.NoRACK {
		recovery = 0
	}
	nagle := tcpip.TCPDelayEnabled(o.Nagle)
	moderate := tcpip.TCPModerateReceiveBufferOption(!o.NoModerateRcvBuf)
	snd := o.SendBuffer.orDefault(DefaultSendBuffer)
	rcv := o.ReceiveBuffer.orDefault(DefaultReceiveBuffer)
	sndOpt := tcpip.TCPSendBufferSizeRangeOption{Min: snd.Min, Default: snd.Default, Max: snd.Max}
	rcvOpt := tcpip.TCPReceiveBufferSizeRangeOption{Min: rcv.Min, Default: rcv.Default, Max: rcv.Max}
	cc := tcpip.CongestionControlOption(o.cc())
	minRTO := tcpip.TCPMinRTOOption(orDur(o.MinRTO, DefaultMinRTO))
	tw := tcpip.TCPTimeWaitTimeoutOption(orDur(o.TimeWait, DefaultTimeWait))
	twReuse := timeWaitReuse[o.twReuse()]
	iw := tcpip.TCPInitialCongestionWindowOption(o.initialCwnd())
	delAck := tcpip.TCPDelayedAckOption(o.delayedAck())
	synLinear := tcpip.TCPSynLinearTimeoutsOption(o.synLinearTimeouts())
	var inlineOpt tcpip.TCPInlineProcessingOption
	if !o.QueuedProcessing {
		inlineOpt = inline.Active
	}
	for _, set := range []struct {
		key string
		opt tcpip.SettableTransportProtocolOption
	}{
		{"tcp.sack", &sack}, {"tcp.rack", &recovery}, {"tcp.nagle", &nagle},
		{"tcp.moderate_rcvbuf", &moderate}, {"tcp.wmem", &sndOpt}, {"tcp.rmem", &rcvOpt},
		{"tcp.cc", &cc}, {"tcp.min_rto", &minRTO}, {"tcp.time_wait", &tw},
		{"tcp.tw_reuse", &twReuse}, {"tcp.initial_cwnd", &iw}, {"tcp.delayed_ack", &delAck},
		{"tcp.syn_linear_timeouts", &synLinear}, {"tcp.inline_processing", &inlineOpt},
	} {
		if err := setTCP(s, set.key, set.opt); err != nil {
			return err
		}
	}
	return nil
}

func orDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func setBool(dst *bool, v string) error {
	switch strings.ToLower(v) {
	case "1", "on", "true", "yes":
		*dst = true
	case "0", "off", "false", "no":
		*dst = false
	default:
		return fmt.Errorf("want 1 or 0")
	}
	return nil
}

func setNegBool(dst *bool, v string) error {
	var b bool
	if err := setBool(&b, v); err != nil {
		return err
	}
	*dst = !b
	return nil
}

func setDuration(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("want a positive duration such as 200ms or 1s")
	}
	*dst = d
	return nil
}

func setRange(dst *BufferRange, v string) error {
	f := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
	if len(f) != 3 {
		return fmt.Errorf(`want three sizes "MIN DEFAULT MAX"`)
	}
	var n [3]int
	for i, s := range f {
		x, err := strconv.Atoi(s)
		if err != nil || x <= 0 {
			return fmt.Errorf("%q is not a positive byte count", s)
		}
		n[i] = x
	}
	r := BufferRange{n[0], n[1], n[2]}
	if r.Min > r.Default || r.Default > r.Max {
		return fmt.Errorf("want MIN <= DEFAULT <= MAX")
	}
	*dst = r
	return nil
}

// Apply sets the options on a running stack (stack-wide TCP options: they
// apply to endpoints made afterwards, and to some settings of existing ones,
// as netstack decides).
func (o *TCPOptions) Apply(s *stack.Stack) error {
	if err := o.Validate(); err != nil {
		return err
	}
	return o.apply(s)
}
