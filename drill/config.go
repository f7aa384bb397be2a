package drill

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Config is a run's configuration: packetdrill's options, from the script's
// header and then the command line (which wins).
type Config struct {
	IPVersion        string     // ipv4 (default), ipv4-mapped-ipv6 or ipv6
	LocalIP          netip.Addr // the stack's address
	RemoteIP         netip.Addr // the scripted peer's
	RemotePrefix     int        // the remote network's prefix length
	BindPort         uint16     // what bind(..., ...) binds
	ConnectPort      uint16     // what connect(..., ...) reaches
	MTU              int
	ToleranceUsecs   int64
	TolerancePercent float64
	InitScripts      []string
	TSEcrScaled      bool
	TSTickUsecs      int64
	NonFatalPacket   bool
	NonFatalSyscall  bool
	Defines          map[string]string
	Verbose          bool
	// Sysctls are settings for the stack under test, as KEY=VALUE: ustack's
	// --sysctl keys or Linux's net.ipv4.* names.
	Sysctls []string
	// Realtime runs ustack on the wall clock instead of virtual time.
	Realtime bool

	given map[string]bool // options set explicitly
}

// DefaultConfig is packetdrill's default configuration, with fixed local
// addresses (packetdrill picks a random one) so that runs are alike.
func DefaultConfig() Config {
	return Config{
		IPVersion:        "ipv4",
		BindPort:         8080,
		ConnectPort:      8080,
		MTU:              1500,
		ToleranceUsecs:   4000,
		TolerancePercent: 12.5,
		Defines:          map[string]string{},
		given:            map[string]bool{},
	}
}

// OptionNames lists the options Set accepts.
var OptionNames = []string{"ip_version", "local_ip", "remote_ip", "bind_port", "connect_port", "mtu",
	"tolerance_usecs", "tolerance_percent", "init_scripts", "tcp_ts_ecr_scaled", "tcp_ts_tick_usecs",
	"strict_segments", "non_fatal", "define", "verbose", "speed", "mss"}

// Set applies one option, as --name=value; value is "" for a flag.
func (c *Config) Set(name, value string) error {
	if c.given == nil {
		c.given = map[string]bool{}
	}
	if c.Defines == nil {
		c.Defines = map[string]string{}
	}
	num := func(min, max int64) (int64, error) {
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil || v < min || v > max {
			return 0, fmt.Errorf("--%s: %q is not a number from %d to %d", name, value, min, max)
		}
		return v, nil
	}
	switch name {
	case "ip_version":
		switch value {
		case "ipv4", "ipv4-mapped-ipv6", "ipv6":
			c.IPVersion = value
		default:
			return fmt.Errorf("--ip_version: %q is not ipv4, ipv4-mapped-ipv6 or ipv6", value)
		}
	case "local_ip", "remote_ip":
		v := value
		bits := -1
		if i := strings.IndexByte(v, '/'); i >= 0 && name == "remote_ip" {
			b, err := strconv.Atoi(v[i+1:])
			if err != nil {
				return fmt.Errorf("--%s: bad prefix length in %q", name, value)
			}
			v, bits = v[:i], b
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return fmt.Errorf("--%s: %q is not an IP address", name, value)
		}
		if name == "local_ip" {
			c.LocalIP = a
		} else {
			c.RemoteIP, c.RemotePrefix = a, bits
		}
	case "bind_port", "connect_port":
		v, err := num(1, 65535)
		if err != nil {
			return err
		}
		if name == "bind_port" {
			c.BindPort = uint16(v)
		} else {
			c.ConnectPort = uint16(v)
		}
	case "mtu":
		v, err := num(576, 65535)
		if err != nil {
			return err
		}
		c.MTU = int(v)
	case "tolerance_usecs":
		v, err := num(0, 1<<40)
		if err != nil {
			return err
		}
		c.ToleranceUsecs = v
	case "tolerance_percent":
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || v < 0 || v > 100 {
			return fmt.Errorf("--tolerance_percent: %q is not a percentage", value)
		}
		c.TolerancePercent = v
	case "init_scripts":
		c.InitScripts = nil
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.InitScripts = append(c.InitScripts, s)
			}
		}
	case "tcp_ts_ecr_scaled":
		c.TSEcrScaled = true
	case "tcp_ts_tick_usecs":
		v, err := num(0, 1<<30)
		if err != nil {
			return err
		}
		c.TSTickUsecs = v
	case "strict_segments":
		// Local mode never merges segments: always strict.
	case "non_fatal":
		for _, t := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' }) {
			switch t {
			case "packet":
				c.NonFatalPacket = true
			case "syscall":
				c.NonFatalSyscall = true
			default:
				return fmt.Errorf("--non_fatal: unknown type %q (packet or syscall)", t)
			}
		}
	case "define":
		k, v, ok := strings.Cut(value, "=")
		if !ok || k == "" {
			return fmt.Errorf("--define: want NAME=VALUE, got %q", value)
		}
		c.Defines[k] = v
	case "verbose":
		c.Verbose = true
	case "speed", "mss":
		// The tun device's speed and a forced MSS do not apply to a
		// virtual link; accepted so that such scripts run.
	default:
		return fmt.Errorf("--%s: unknown option (supported: --%s)", name, strings.Join(OptionNames, ", --"))
	}
	c.given[name] = true
	return nil
}

// finalize fills in addresses the options left out.
func (c *Config) finalize() {
	if !c.LocalIP.IsValid() {
		if c.IPVersion == "ipv6" {
			c.LocalIP = netip.MustParseAddr("fd3d:fa7b:d17d::1")
		} else {
			c.LocalIP = netip.MustParseAddr("192.168.0.2")
		}
	}
	if !c.RemoteIP.IsValid() {
		if c.IPVersion == "ipv6" {
			c.RemoteIP, c.RemotePrefix = netip.MustParseAddr("2001:db8::1"), 32
		} else {
			c.RemoteIP, c.RemotePrefix = netip.MustParseAddr("192.0.2.1"), 24
		}
	}
	if c.RemotePrefix < 0 {
		c.RemotePrefix = c.RemoteIP.BitLen()
	}
}

// wireV6 reports whether packets are IPv6.
func (c *Config) wireV6() bool { return c.IPVersion == "ipv6" }

// socketDomain is the family of the script's sockets.
func (c *Config) socketDomain() int64 {
	if c.IPVersion == "ipv4" {
		return 2 // AF_INET
	}
	return 10 // AF_INET6
}

// localLen is the local network's prefix length.
func (c *Config) localLen() int {
	if c.LocalIP.Is6() {
		return 48
	}
	return 16
}

// merge applies the script's options, then the command line's over them.
func merge(script []Option, cmdline Config) (Config, error) {
	c := DefaultConfig()
	for _, o := range script {
		v := o.Value
		if !o.HasValue {
			v = ""
		}
		if err := c.Set(o.Name, v); err != nil {
			return c, fmt.Errorf("line %d: %w", o.Line, err)
		}
	}
	// The command line's explicit settings win.
	cl := cmdline
	if cl.given["ip_version"] {
		c.IPVersion = cl.IPVersion
	}
	if cl.LocalIP.IsValid() {
		c.LocalIP = cl.LocalIP
	}
	if cl.RemoteIP.IsValid() {
		c.RemoteIP, c.RemotePrefix = cl.RemoteIP, cl.RemotePrefix
	}
	if cl.given["bind_port"] {
		c.BindPort = cl.BindPort
	}
	if cl.given["connect_port"] {
		c.ConnectPort = cl.ConnectPort
	}
	if cl.given["mtu"] {
		c.MTU = cl.MTU
	}
	if cl.given["tolerance_usecs"] {
		c.ToleranceUsecs = cl.ToleranceUsecs
	}
	if cl.given["tolerance_percent"] {
		c.TolerancePercent = cl.TolerancePercent
	}
	if cl.given["init_scripts"] {
		c.InitScripts = cl.InitScripts
	}
	c.TSEcrScaled = c.TSEcrScaled || cl.TSEcrScaled
	if cl.given["tcp_ts_tick_usecs"] {
		c.TSTickUsecs = cl.TSTickUsecs
	}
	c.NonFatalPacket = c.NonFatalPacket || cl.NonFatalPacket
	c.NonFatalSyscall = c.NonFatalSyscall || cl.NonFatalSyscall
	for k, v := range cl.Defines {
		c.Defines[k] = v
	}
	c.Verbose = c.Verbose || cl.Verbose
	c.Sysctls = append(append([]string(nil), c.Sysctls...), cl.Sysctls...)
	c.Realtime = cl.Realtime
	c.finalize()
	if c.wireV6() != c.LocalIP.Is6() || c.wireV6() != c.RemoteIP.Is6() {
		return c, fmt.Errorf("--ip_version=%s does not match --local_ip=%s and --remote_ip=%s", c.IPVersion, c.LocalIP, c.RemoteIP)
	}
	return c, nil
}
