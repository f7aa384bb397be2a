package ustack

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ustack/ustack/cc"
	"github.com/ustack/ustack/mutate"
	"github.com/ustack/ustack/nat"
	"github.com/ustack/ustack/netstack"
)

// TCPOptions are the stack-wide TCP settings (congestion control, SACK,
// RACK, buffers, Nagle, minimum RTO, TIME-WAIT). The zero value is ustack's
// defaults; see netstack.SysctlHelp for the keys accepted by Set.
type TCPOptions = netstack.TCPOptions

// BufferRange is a MIN/DEFAULT/MAX socket buffer size range in bytes.
type BufferRange = netstack.BufferRange

// PortMapping publishes a port of the user-level stack on the host (-p).
type PortMapping = nat.Publish

// ParsePortMapping parses -p's [HOSTIP:]HOSTPORT:PORT[/udp].
func ParsePortMapping(spec string) (PortMapping, error) { return nat.ParsePublish(spec) }

// HostPort is a port the stack serves under --net host (--host-port).
type HostPort struct {
	Port uint16
	UDP  bool
}

func (p HostPort) String() string {
	if p.UDP {
		return fmt.Sprintf("%d/udp", p.Port)
	}
	return fmt.Sprint(p.Port)
}

// ParseHostPort parses --host-port's PORT[/tcp|/udp].
func ParseHostPort(s string) (HostPort, error) {
	num, proto, _ := strings.Cut(s, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 || (proto != "" && proto != "tcp" && proto != "udp") {
		return HostPort{}, fmt.Errorf("%q is not PORT[/udp] (e.g. 8080 or 53/udp)", s)
	}
	return HostPort{Port: uint16(n), UDP: proto == "udp"}, nil
}

// Config describes one user-level stack. The zero value is a stack on the
// nat attachment with slirp's addresses.
type Config struct {
	// Net is the attachment: NAT (the default, also when Net is nil), Tap,
	// Host or Switch.
	Net Attachment
	// Addrs are the stack's addresses with prefix length. For nat the
	// default is 10.0.2.15/24 and fd00::15/64.
	Addrs []netip.Prefix
	// Gateways are the default routers, at most one per family. For nat the
	// default is the second address of each prefix (10.0.2.2, fd00::2).
	Gateways []netip.Addr
	// DNS are the name servers the Go API resolves names with. For nat the
	// default is the third address of each prefix (10.0.2.3, fd00::3).
	DNS []netip.Addr
	// MTU is the largest IP packet on the link. 0 means 65520 for nat (an
	// in-memory link, like pasta's default) and 1500 for a pair.
	MTU int
	// TCP are the stack-wide TCP settings.
	TCP TCPOptions
	// Pcap, if set, receives every frame of every NIC as a pcap stream
	// (LINKTYPE_ETHERNET). The stack closes it on Close if it is an io.Closer.
	Pcap io.Writer
	// BusyPoll, above zero, keeps the reader of a tap or host link polling
	// its fd for this long after each frame before it lets the goroutine
	// sleep (--busy-poll; Linux's busy_poll in spirit). The reply of a
	// request-response exchange then finds the reader awake instead of
	// costing scheduler and vCPU wake-ups, which dominate a small round
	// trip; the price is a CPU kept busy while traffic flows. Not for nat
	// or a host stack through portd, which have no fd of their own to poll.
	BusyPoll time.Duration
	// Link emulates the link of the attachment's NIC (rate, delay, loss...
	// with netem's semantics, package shape), in each direction. The zero
	// value changes nothing; Stack.SetLink changes it while the stack runs.
	Link Link
	// Mutate are packet-mutator rules (package mutate; mutate.Parse reads
	// "ack-division=4" or "drop tcp dport 80 flags S"), applied in order to
	// the frames of the attachment's NIC, above the emulated link. None
	// changes nothing; Stack.SetMutate changes them while the stack runs.
	Mutate []mutate.Rule
	// LinkLoss drops a fraction of the frames the stack sends, for tests
	// of loss recovery. Zero is no loss.
	LinkLoss LinkLoss
	// Logf, if set, receives one line per notable event (refused
	// connections, dropped frames). Nil discards them.
	Logf func(format string, args ...any)
}

// LinkLoss makes the stack's link drop frames it sends: each with
// probability Fraction (0 to below 1), chosen by a generator seeded with
// Seed, so a run can be repeated. Stack.Lost counts them.
type LinkLoss struct {
	Fraction float64
	Seed     uint64
}

// ConfigError is a problem with the configuration. Field names the field
// at fault: a field of Config ("MTU", "Addrs", "TCP.CongestionControl"),
// or of the attachment in Config.Net, led by its type ("Host.Ports",
// "NAT.Publish"); "Net" is the attachment as a whole.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("%s: %v", e.Field, e.Err) }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(field string, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Defaults of the nat attachment, after slirp and QEMU's user networking.
var (
	natAddr4 = netip.MustParsePrefix("10.0.2.15/24")
	natAddr6 = netip.MustParsePrefix("fd00::15/64")
)

const (
	natMTU  = 65520
	pairMTU = 1500
	maxMTU  = 65535
)

// nthAddr returns the n-th address of p's network (n=2 is 10.0.2.2 in 10.0.2.0/24).
func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func (c *Config) validate() error {
	if c.MTU < 0 || (c.MTU != 0 && (c.MTU < 1280 || c.MTU > maxMTU)) {
		return configErr("MTU", "%d is out of range (use 1280 to %d; IPv6 needs at least 1280)", c.MTU, maxMTU)
	}
	seen := map[bool]bool{}
	for _, g := range c.Gateways {
		if seen[g.Is4()] {
			return configErr("Gateways", "more than one %s gateway (give at most one per address family)", family(g))
		}
		seen[g.Is4()] = true
		if !g.IsValid() {
			return configErr("Gateways", "invalid address")
		}
	}
	for _, p := range c.Addrs {
		if !p.IsValid() || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
			return configErr("Addrs", "%s is not a usable host address (use e.g. 10.0.2.15/24)", p)
		}
	}
	if c.BusyPoll < 0 || c.BusyPoll > maxBusyPoll {
		return configErr("BusyPoll", "%v is out of range (use 0 to %v, e.g. 200us)", c.BusyPoll, maxBusyPoll)
	}
	if f := c.LinkLoss.Fraction; !(f >= 0 && f < 1) {
		return configErr("LinkLoss", "fraction %v is out of range (use 0 to below 1, e.g. 0.01 for 1%%)", f)
	}
	if err := c.Link.validate(); err != nil {
		return err
	}
	if err := validateMutate(c.Mutate); err != nil {
		return err
	}
	if err := (&TCPOptions{CongestionControl: c.TCP.CongestionControl}).Validate(); err != nil {
		return configErr("TCP.CongestionControl", "unknown congestion control %q (available: %s)", c.TCP.CongestionControl, strings.Join(cc.Names(), ", "))
	}
	if err := c.TCP.Validate(); err != nil {
		return &ConfigError{Field: "TCP", Err: err}
	}
	return nil
}

// maxBusyPoll bounds --busy-poll: longer polls only burn CPU between
// exchanges that are far apart anyway.
const maxBusyPoll = 100 * time.Millisecond

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
