package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/cc"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/link"
	"github.com/ustack/ustack/mutate"
	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/portd"
	"github.com/ustack/ustack/shape"
)

// stackFlags are the flags of every command that builds a stack.
type stackFlags struct {
	net            ustack.Attachment
	addrs          []netip.Prefix
	gateways       []netip.Addr
	mtu            int
	cc             string
	pcap           string
	publish        []ustack.PortMapping
	sysctl         []keyValue
	dnsUpstreams   []netip.AddrPort
	noHostLoopback bool
	hostPorts      []ustack.HostPort
	portd          string
	busyPoll       time.Duration
	link           linkFlags
	mutate         []mutate.Rule
	verbose        bool
	// label names the stack's port on a switch: the served stack's name.
	label string
}

// linkFlags are --link (both directions), --link-out and --link-in, each
// a spec already parsed; nil when not given.
type linkFlags struct{ both, out, in *shape.Spec }

// link is the Link the flags describe: --link-out and --link-in win over
// --link for their direction.
func (f linkFlags) link() ustack.Link {
	var l ustack.Link
	for _, p := range []struct {
		dst      *shape.Spec
		specific *shape.Spec
	}{{&l.Egress, f.out}, {&l.Ingress, f.in}} {
		switch {
		case p.specific != nil:
			*p.dst = *p.specific
		case f.both != nil:
			*p.dst = *f.both
		}
	}
	return l
}

type keyValue struct{ key, value string }

func (kv keyValue) String() string { return kv.key + "=" + kv.value }

// stackOptionNames are the first names of the stack flags, so that commands
// attached to a daemon (--stack) can refuse them.
var stackOptionNames = []string{"net", "ip", "gateway", "mtu", "cc", "pcap", "p", "sysctl", "dns-upstream", "no-host-loopback", "host-port", "portd", "busy-poll", "link", "link-out", "link-in", "mutate", "v"}

func (f *stackFlags) register(s *optionSet) {
	f.net = ustack.NAT{}
	s.add(&option{names: []string{"net"}, arg: "ATTACHMENT", value: netValue{&f.net},
		help: "attachment to the world: nat (unprivileged; host sockets, like slirp), tap:NAME[,create] (own MAC and --ip on a tap device; ,create makes it, with CAP_NET_ADMIN), host:IFACE[,ephemeral=N] (share IFACE's addresses and MAC with the host; root, or any user through ustack portd; N host ports for outgoing connections, 64 by default), switch:NAME (own MAC and --ip on a port of ustack switch NAME; unprivileged) or pcap:FILE[,out=FILE][,speed=realtime|max|N] (replay a capture to the stack as if received, record what it sends; own MAC and --ip)"})
	s.add(&option{names: []string{"ip"}, arg: "CIDR", repeat: true,
		value: &listValue[netip.Prefix]{p: &f.addrs, parse: parseCIDR},
		help:  "address of the stack with prefix length, one per family (nat default: 10.0.2.15/24 and fd00::15/64)"})
	s.add(&option{names: []string{"gateway"}, arg: "IP", repeat: true,
		value: &listValue[netip.Addr]{p: &f.gateways, parse: parseGateway},
		help:  "default router, one per family (nat default: the .2 address, 10.0.2.2 and fd00::2, which reaches the host's loopback)"})
	s.add(&option{names: []string{"mtu"}, arg: "N", value: intValue{p: &f.mtu, min: 1280, max: 65535, what: "an MTU in bytes"},
		help: "link MTU in bytes, 1280-65535 (nat default: 65520)"})
	s.add(&option{names: []string{"cc"}, arg: "NAME", value: ccValue{&f.cc},
		help: "TCP congestion control, one of those ustack version lists (default: reno)"})
	s.add(&option{names: []string{"pcap"}, arg: "FILE", value: stringValue{&f.pcap},
		help: "write every frame of the stack's link to FILE (pcap, Ethernet); flushed when the command ends"})
	s.add(&option{names: []string{"p", "publish"}, arg: "[HOSTIP:]HOSTPORT:PORT[/udp]", repeat: true,
		value: &listValue[ustack.PortMapping]{p: &f.publish, parse: parsePublish},
		help:  "publish PORT of the stack on the host's HOSTPORT (nat; tcp unless /udp)"})
	s.add(&option{names: []string{"sysctl"}, arg: "KEY=VALUE", repeat: true, envSep: ";",
		value: &listValue[keyValue]{p: &f.sysctl, parse: parseSysctl},
		help:  "set a TCP option of the stack (keys below); USTACK_SYSCTL separates settings with ';' or newlines"})
	s.add(&option{names: []string{"dns-upstream"}, arg: "ADDR[:PORT]", repeat: true,
		value: &listValue[netip.AddrPort]{p: &f.dnsUpstreams, parse: parseUpstream},
		help:  "resolver the nat DNS address (10.0.2.3) forwards to (default: the host's, from /etc/resolv.conf; port 53)"})
	s.add(&option{names: []string{"host-port"}, arg: "PORT[/udp]", repeat: true,
		value: &listValue[ustack.HostPort]{p: &f.hostPorts, parse: parseHostPort},
		help:  "net host: reserve PORT on the host for a listener on the stack (tcp unless /udp); other fixed ports cannot be bound"})
	s.add(&option{names: []string{"portd"}, arg: "PATH", value: stringValue{&f.portd},
		help: "net host: go through the ustack portd serving PATH; without root always (default: " + portd.DefaultSocket + ")"})
	s.add(&option{names: []string{"busy-poll"}, arg: "DURATION", value: durationValue{p: &f.busyPoll},
		help: "tap and host: keep polling the device for DURATION (e.g. 200us) after each frame before sleeping; saves wake-ups in request-response traffic at the price of a busy CPU"})
	s.add(&option{names: []string{"no-host-loopback"}, value: boolValue{&f.noHostLoopback},
		help: "nat: do not let the gateway address (10.0.2.2) reach the host's loopback"})
	s.add(&option{names: []string{"link"}, arg: "SPEC", value: specValue{&f.link.both},
		help: "emulate the link both ways, with netem's words, e.g. \"rate 10mbit delay 25ms loss 1%\" (see the README; ustack link set changes it later)"})
	s.add(&option{names: []string{"link-out"}, arg: "SPEC", value: specValue{&f.link.out},
		help: "emulate the link for what the stack sends (egress); wins over --link"})
	s.add(&option{names: []string{"link-in"}, arg: "SPEC", value: specValue{&f.link.in},
		help: "emulate the link for what the stack receives (ingress); wins over --link"})
	s.add(&option{names: []string{"mutate"}, arg: "RULE", repeat: true, envSep: ";",
		value: &listValue[mutate.Rule]{p: &f.mutate, parse: mutate.Parse},
		help:  "apply a packet-mutator rule to the NIC's frames, above the emulated link, e.g. ack-division=4 or \"drop tcp dport 80 flags S prob 50%\" (one rule a flag, in order; see the README; ustack mutate set changes them later); USTACK_MUTATE separates rules with ';'"})
}

// specValue is a link spec in package shape's text form.
type specValue struct{ p **shape.Spec }

func (v specValue) Set(s string) error {
	spec, err := shape.Parse(s)
	if err != nil {
		return err
	}
	*v.p = &spec
	return nil
}
func (v specValue) String() string {
	if v.p == nil || *v.p == nil {
		return ""
	}
	return (**v.p).String()
}

// registerVerbose adds -v to commands that are quiet by default: their
// stderr is for the one error line unless asked for more.
func (f *stackFlags) registerVerbose(s *optionSet) {
	s.add(&option{names: []string{"v", "verbose"}, value: boolValue{&f.verbose},
		help: "log the stack's notable events (refused connections, dropped frames) to stderr"})
}

type netValue struct{ p *ustack.Attachment }

func (v netValue) Set(s string) error {
	a, err := parseAttachment(s)
	if err != nil {
		return err
	}
	*v.p = a
	return nil
}
func (v netValue) String() string {
	if v.p == nil || *v.p == nil {
		return ""
	}
	return (*v.p).String()
}

// parseAttachment reads --net's nat, tap:NAME[,create], host:IFACE[,ephemeral=N] or
// switch:NAME; the attachment's String gives the same form back. The attachment-specific
// flags (-p, --host-port...) are added by config.
func parseAttachment(s string) (ustack.Attachment, error) {
	kind, arg, _ := strings.Cut(s, ":")
	switch {
	case s == "nat":
		return ustack.NAT{}, nil
	case kind == "tap":
		name, opt, _ := strings.Cut(arg, ",")
		if name == "" || opt != "" && opt != "create" {
			return nil, fmt.Errorf("%q: want tap:NAME or tap:NAME,create", s)
		}
		return ustack.Tap{Name: name, Create: opt == "create"}, nil
	case kind == "host":
		return parseHost(s, arg)
	case kind == "switch":
		if !control.ValidName(arg) {
			return nil, fmt.Errorf("%q: want switch:NAME, NAME the name of a ustack switch (letters, digits, '.', '_', '-')", s)
		}
		return ustack.Switch{Name: arg}, nil
	case kind == "pcap":
		return parsePcap(s, arg)
	}
	return nil, fmt.Errorf("unknown attachment %q (available: nat, tap:NAME[,create], host:IFACE[,ephemeral=N], switch:NAME, pcap:FILE[,out=FILE][,speed=realtime|max|N])", s)
}

// parseHost reads the rest of host:IFACE[,ephemeral=N].
func parseHost(s, arg string) (ustack.Attachment, error) {
	fields := strings.Split(arg, ",")
	h := ustack.Host{Iface: fields[0]}
	if h.Iface == "" || strings.ContainsAny(h.Iface, "/ =") {
		return nil, fmt.Errorf("%q: want host:IFACE[,ephemeral=N] (e.g. host:eth0)", s)
	}
	for _, f := range fields[1:] {
		key, val, _ := strings.Cut(f, "=")
		if key != "ephemeral" {
			return nil, fmt.Errorf("%q: unknown option %q (host takes ephemeral=N)", s, f)
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 || n > 16384 {
			return nil, fmt.Errorf("%q: ephemeral=%s: want the number of host ports for outgoing connections, 1 to 16384 (default 64)", s, val)
		}
		h.EphemeralPorts = n
	}
	return h, nil
}

// parsePcap reads the rest of pcap:IN[,out=OUT][,speed=realtime|max|N][,mac=keep].
func parsePcap(s, arg string) (ustack.Attachment, error) {
	fields := strings.Split(arg, ",")
	p := ustack.Pcap{In: fields[0], Speed: 1}
	if p.In == "" {
		return nil, fmt.Errorf("%q: want pcap:FILE[,out=FILE][,speed=realtime|max|N], FILE a capture to replay", s)
	}
	for _, f := range fields[1:] {
		key, val, _ := strings.Cut(f, "=")
		switch key {
		case "out":
			if val == "" {
				return nil, fmt.Errorf("%q: out= needs a file to write what the stack sends", s)
			}
			p.Out = val
		case "speed":
			n, err := link.ParseReplaySpeed(val)
			if err != nil {
				return nil, fmt.Errorf("%q: speed=%s: want realtime, max or a positive factor such as 10", s, val)
			}
			p.Speed = n
		case "mac":
			if val != "keep" {
				return nil, fmt.Errorf("%q: mac=%s: the only value is keep (leave the captured destination MACs alone)", s, val)
			}
			p.KeepMAC = true
		default:
			return nil, fmt.Errorf("%q: unknown option %q (pcap takes out=FILE, speed=realtime|max|N and mac=keep)", s, f)
		}
	}
	return p, nil
}

type ccValue struct{ p *string }

func (v ccValue) Set(s string) error {
	if s == "" {
		return cc.Check(s)
	}
	if err := (&netstack.TCPOptions{CongestionControl: s}).Validate(); err != nil {
		return err
	}
	*v.p = s
	return nil
}
func (v ccValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%q is not an address with prefix length (use e.g. 10.0.2.15/24 or fd00::15/64)", s)
	}
	return p, nil
}

func parseGateway(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("%q is not an IP address (use e.g. 10.0.2.2 or fd00::2)", s)
	}
	return a.Unmap(), nil
}

func parsePublish(s string) (ustack.PortMapping, error) {
	p, err := ustack.ParsePortMapping(s)
	if err != nil {
		return p, fmt.Errorf("%v", err)
	}
	return p, nil
}

func parseHostPort(s string) (ustack.HostPort, error) { return ustack.ParseHostPort(s) }

func parseSysctl(s string) (keyValue, error) {
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return keyValue{}, fmt.Errorf("%q is not KEY=VALUE (e.g. tcp.sack=0; keys: %s)", s, strings.Join(netstack.SysctlKeys(), ", "))
	}
	// Checked now so that a typo is a usage error before anything starts.
	var probe netstack.TCPOptions
	if err := probe.Set(k, v); err != nil {
		return keyValue{}, err
	}
	return keyValue{k, v}, nil
}

// parseUpstream takes ADDR or ADDR:PORT; an IPv6 address with a port is
// written in brackets, [2001:db8::53]:5353.
func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not ADDR[:PORT] (use e.g. 1.1.1.1, 192.168.1.1:5353 or [2001:db8::53]:53)", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}

// config turns the flags into a stack Config. It creates the --pcap file;
// the returned cleanup removes it again if the stack could not be built.
func (f *stackFlags) config() (ustack.Config, func(), error) {
	cfg := ustack.Config{
		Net:      f.net,
		Addrs:    f.addrs,
		Gateways: f.gateways,
		MTU:      f.mtu,
		BusyPoll: f.busyPoll,
		Link:     f.link.link(),
		Mutate:   f.mutate,
	}
	// Flags that belong to another attachment are ignored: the
	// environment may set them for every stack.
	switch a := f.net.(type) {
	case ustack.NAT:
		a.NoHostLoopback, a.DNSUpstreams, a.Publish = f.noHostLoopback, f.dnsUpstreams, f.publish
		cfg.Net = a
	case ustack.Host:
		a.Ports, a.Portd = f.hostPorts, f.portd
		cfg.Net = a
	case ustack.Switch:
		a.Label = f.label
		cfg.Net = a
	}
	cfg.TCP.CongestionControl = f.cc
	for _, kv := range f.sysctl {
		if err := cfg.TCP.Set(kv.key, kv.value); err != nil {
			return cfg, nil, &ustack.ConfigError{Field: "TCP", Err: err}
		}
	}
	cleanup := func() {}
	if f.pcap != "" {
		_, statErr := os.Stat(f.pcap)
		existed := statErr == nil
		file, err := os.Create(f.pcap)
		if err != nil {
			return cfg, nil, &ustack.ConfigError{Field: "Pcap", Err: fmt.Errorf("%w (choose a writable path)", err)}
		}
		cfg.Pcap = file
		cleanup = func() {
			file.Close()
			if !existed {
				os.Remove(f.pcap)
			}
		}
	}
	return cfg, cleanup, nil
}

// newStack builds the stack the flags describe; logf receives its events
// when -v is given (the daemon sets verbose itself).
func (f *stackFlags) newStack(logf func(string, ...any)) (*ustack.Stack, error) {
	cfg, cleanup, err := f.config()
	if err != nil {
		return nil, err
	}
	if f.verbose {
		cfg.Logf = logf
	}
	st, err := ustack.New(cfg)
	if err != nil {
		cleanup()
		return nil, err
	}
	return st, nil
}

// configFieldFlags name the flag that sets each Config field a stack can
// refuse (ustack.ConfigError.Field).
var configFieldFlags = map[string]string{
	"Net":                   "--net",
	"Tap.Name":              "--net",
	"Host.Iface":            "--net",
	"Switch.Name":           "--net",
	"Addrs":                 "--ip",
	"Gateways":              "--gateway",
	"MTU":                   "--mtu",
	"TCP.CongestionControl": "--cc",
	"TCP":                   "--sysctl",
	"Pcap":                  "--pcap",
	"NAT.Publish":           "-p",
	"NAT.DNSUpstreams":      "--dns-upstream",
	"Host.Ports":            "--host-port",
	"Host.Portd":            "--portd",
	"BusyPoll":              "--busy-poll",
	"Link":                  "--link",
	"Mutate":                "--mutate",
}

// describeConfigError names the flag at fault and adds the fix to stack
// errors that arrive without one. A field no flag sets keeps its name.
func describeConfigError(ce *ustack.ConfigError) string {
	name, ok := configFieldFlags[ce.Field]
	if !ok {
		name = ce.Field
	}
	msg := fmt.Sprintf("%s: %v", name, ce.Err)
	if name == "-p" && errors.Is(ce.Err, syscall.EADDRINUSE) {
		msg += " (the host port is taken: choose another HOSTPORT or stop what listens on it)"
	} else if name == "-p" && errors.Is(ce.Err, syscall.EACCES) {
		msg += " (ports below 1024 need privilege: choose a HOSTPORT of 1024 or more)"
	}
	return msg
}
