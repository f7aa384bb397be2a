// Package nat is the unprivileged attachment: a gateway netstack at the other
// end of the user-level stack's link that terminates its connections and
// carries them over ordinary host sockets, the way slirp and pasta do. It
// also serves the DNS address, answers for the host alias (10.0.2.2 reaches
// the host's loopback) and publishes host ports to listeners on the stack.
package nat

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Config describes the gateway side of a nat link.
type Config struct {
	// Addrs are the gateway's own addresses (host alias and DNS address for
	// each family) with the link's prefix length.
	Addrs []netip.Prefix
	// Guest4 and Guest6 are the user-level stack's addresses, the targets of
	// published ports.
	Guest4, Guest6 netip.Addr
	// Gateway4/6 is the host alias: connections to it go to the host's
	// loopback unless NoHostLoopback is set.
	Gateway4, Gateway6 netip.Addr
	// DNS4/6 is the DNS address: port 53 there is forwarded to DNSUpstreams.
	DNS4, DNS6 netip.Addr
	// MTU of the link (IP packet size).
	MTU int

	NoHostLoopback bool
	// DNSUpstreams default to the nameservers of /etc/resolv.conf.
	DNSUpstreams []netip.AddrPort
	Publish      []Publish
	Logf         func(format string, args ...any)
}

// Publish forwards a host port to a port of the user-level stack.
type Publish struct {
	Proto     string     // "tcp" or "udp"
	HostAddr  netip.Addr // zero: all host addresses
	HostPort  uint16
	GuestPort uint16
}

func (p Publish) String() string {
	host := ""
	if p.HostAddr.IsValid() {
		host = p.HostAddr.String() + ":"
		if p.HostAddr.Is6() {
			host = "[" + p.HostAddr.String() + "]:"
		}
	}
	return fmt.Sprintf("%s%d:%d/%s", host, p.HostPort, p.GuestPort, p.Proto)
}

// PublishError is a published port that could not be opened on the host.
type PublishError struct {
	Publish Publish
	Err     error
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("%s: %v", e.Publish, e.Err)
}

func (e *PublishError) Unwrap() error { return e.Err }

// ParsePublish parses [HOSTIP:]HOSTPORT:PORT[/tcp|/udp]; HOSTIP may be an
// IPv6 address in brackets.
func ParsePublish(spec string) (Publish, error) {
	p := Publish{Proto: "tcp"}
	rest := spec
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		p.Proto = strings.ToLower(rest[i+1:])
		rest = rest[:i]
		if p.Proto != "tcp" && p.Proto != "udp" {
			return p, fmt.Errorf("%q: protocol must be tcp or udp", spec)
		}
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return p, fmt.Errorf("%q: want [HOSTIP:]HOSTPORT:PORT[/udp], e.g. 8080:80", spec)
	}
	guest, hostPart := rest[i+1:], rest[:i]
	if j := strings.LastIndexByte(hostPart, ':'); j >= 0 {
		ip := strings.TrimSuffix(strings.TrimPrefix(hostPart[:j], "["), "]")
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return p, fmt.Errorf("%q: host address %q is not an IP address", spec, ip)
		}
		p.HostAddr = a.Unmap()
		hostPart = hostPart[j+1:]
	}
	var err error
	if p.HostPort, err = parsePort(hostPart); err != nil {
		return p, fmt.Errorf("%q: host port: %v", spec, err)
	}
	if p.GuestPort, err = parsePort(guest); err != nil {
		return p, fmt.Errorf("%q: port: %v", spec, err)
	}
	if p.GuestPort == 0 {
		return p, fmt.Errorf("%q: port must not be 0", spec)
	}
	return p, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number (0-65535)", s)
	}
	return uint16(n), nil
}

// HostResolvers reads the nameservers of a resolv.conf file, port 53.
func HostResolvers(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		// Drop a zone (fe80::1%eth0): host sockets take it, netip does not.
		a, err := netip.ParseAddr(strings.SplitN(fields[1], "%", 2)[0])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out, sc.Err()
}
