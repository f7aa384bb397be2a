// Package hostports keeps the host kernel away from the ports of a
// user-level stack that shares the host's IP addresses: each port is held
// by a host socket bound to it (so the kernel gives it to no one else), and
// an nftables table of the stack's own drops the port's packets in the
// kernel's input path (so the kernel neither answers nor resets them; the
// stack's packet socket has seen them already). Package hostshare puts the
// two together with the stack's packet socket, in order.
package hostports

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Proto is a transport protocol whose ports are reserved.
type Proto string

const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// Reservation holds host ports for a stack on the given addresses. A port
// is held by one bound socket per address that is never listened on nor
// connected, so it carries no traffic; the sockets die with the process,
// which is why a SIGKILLed stack leaks no ports.
type Reservation struct {
	addrs []netip.Addr

	mu  sync.Mutex
	fds map[key][]int
}

type key struct {
	proto Proto
	port  uint16
}

// NewReservation reserves nothing yet; addrs are the shared addresses the
// ports are bound on.
func NewReservation(addrs []netip.Addr) *Reservation {
	return &Reservation{addrs: addrs, fds: map[key][]int{}}
}

// Reserve holds port for proto on every address. A port the host already
// uses gives an error wrapping EADDRINUSE. Reserving a held port again is a
// no-op.
func (r *Reservation) Reserve(proto Proto, port uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reserveLocked(proto, port)
}

func (r *Reservation) reserveLocked(proto Proto, port uint16) error {
	k := key{proto, port}
	if _, ok := r.fds[k]; ok {
		return nil
	}
	if port == 0 {
		return fmt.Errorf("%s port 0 cannot be reserved", proto)
	}
	var fds []int
	for _, a := range r.addrs {
		fd, err := bindDummy(proto, a, port)
		if err != nil {
			closeAll(fds)
			return fmt.Errorf("reserving %s port %d on %s: %w", proto, port, a, err)
		}
		fds = append(fds, fd)
	}
	r.fds[k] = fds
	return nil
}

// ReserveBlock reserves n consecutive ports for both TCP and UDP from the
// host's ephemeral range (net.ipv4.ip_local_port_range), trying random
// places until one is wholly free, and returns the first. The kernel's
// connect() skips bound ports when it picks its own, so the block is the
// stack's alone.
func (r *Reservation) ReserveBlock(n int) (uint16, error) {
	lo, hi := localPortRange()
	if n <= 0 || n > hi-lo+1 {
		return 0, fmt.Errorf("cannot reserve %d ports from the host's range %d-%d", n, lo, hi)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var lastErr error
	for range 32 {
		first := lo + rand.IntN(hi-lo+2-n)
		if err := r.tryBlockLocked(uint16(first), n); err != nil {
			lastErr = err
			continue
		}
		return uint16(first), nil
	}
	return 0, fmt.Errorf("no block of %d free ports in %d-%d: %w", n, lo, hi, lastErr)
}

func (r *Reservation) tryBlockLocked(first uint16, n int) error {
	var done []key
	for i := range n {
		for _, proto := range []Proto{TCP, UDP} {
			k := key{proto, first + uint16(i)}
			if _, held := r.fds[k]; held {
				continue
			}
			if err := r.reserveLocked(proto, k.port); err != nil {
				for _, d := range done {
					closeAll(r.fds[d])
					delete(r.fds, d)
				}
				return err
			}
			done = append(done, k)
		}
	}
	return nil
}

// Release gives port of proto back to the host; releasing a port that is
// not held does nothing.
func (r *Reservation) Release(proto Proto, port uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{proto, port}
	closeAll(r.fds[k])
	delete(r.fds, k)
}

// Ports returns the reserved ports of proto, the ephemeral block included.
func (r *Reservation) Ports(proto Proto) []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint16
	for k := range r.fds {
		if k.proto == proto {
			out = append(out, k.port)
		}
	}
	return out
}

// Has reports whether port is reserved for proto.
func (r *Reservation) Has(proto Proto, port uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.fds[key{proto, port}]
	return ok
}

// Close releases every port.
func (r *Reservation) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, fds := range r.fds {
		closeAll(fds)
		delete(r.fds, k)
	}
	return nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// bindDummy binds a socket to addr:port without SO_REUSEADDR, so no other
// socket of the host can bind the port on that address or the wildcard.
func bindDummy(proto Proto, a netip.Addr, port uint16) (int, error) {
	typ := unix.SOCK_STREAM
	if proto == UDP {
		typ = unix.SOCK_DGRAM
	}
	var sa unix.Sockaddr
	domain := unix.AF_INET
	if a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(port), Addr: a.As4()}
	} else {
		domain = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(port), Addr: a.As16()}
	}
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if domain == unix.AF_INET6 {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	// An address that the kernel is still validating (IPv6 DAD) cannot be
	// bound yet; IP_FREEBIND lets the reservation precede it.
	unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1)
	if proto == UDP {
		// Nothing should ever queue here (the firewall drops the port's
		// datagrams first), but if it did it must not pin much memory.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1024)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// EphemeralRange returns the host's ephemeral port range
// (net.ipv4.ip_local_port_range), from which ReserveBlock takes its
// blocks: its first and last port.
func EphemeralRange() (first, last int) { return localPortRange() }

// localPortRange reads the host's ephemeral port range, or Linux's default.
func localPortRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && 0 < lo && lo <= hi && hi <= 65535 {
				return lo, hi
			}
		}
	}
	return 32768, 60999
}

// IsInUse reports whether err says the host already uses a port.
func IsInUse(err error) bool { return errors.Is(err, unix.EADDRINUSE) }

// InterfacePrefixes returns the interface's IPv4 and global IPv6 addresses.
// Link-local IPv6 addresses are left to the kernel: the stack reaches its
// neighbours from its global address. These are the addresses a stack may
// share with the host.
func InterfacePrefixes(ifi *net.Interface) ([]netip.Prefix, error) {
	as, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() || ip.IsLoopback() {
			continue
		}
		ones, _ := ipn.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	return out, nil
}
