// Package netstack builds gVisor netstack instances with the protocols and TCP
// options ustack uses. It is the one place that knows how a tcpip Stack is put
// together; attachments and the Go API take the result.
package netstack

import (
	"fmt"
	"math/rand"
	randv2 "math/rand/v2"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// New returns a netstack with IPv4, IPv6, ARP, ICMP, UDP and TCP, configured
// with opts. Invalid options are reported with the sysctl key they belong to.
func New(opts TCPOptions) (*stack.Stack, error) {
	return build(opts, true, nil, stack.Options{})
}

// NewWithProbe is New with netstack's TCP probe: probe is called, under
// the endpoint's lock, after every segment a TCP endpoint receives. A nil
// probe, or opts.NoProbe, is the same as New.
func NewWithProbe(opts TCPOptions, probe tcp.TCPProbeFunc) (*stack.Stack, error) {
	return build(opts, true, probe, stack.Options{})
}

// NewClocked is NewWithProbe for a stack whose time and randomness the
// caller controls: its timers run on clock, and its random numbers
// (initial sequence numbers, ephemeral ports, timestamp offsets) come from
// seed, so that a run driven step by step in virtual time can be repeated
// exactly.
func NewClocked(opts TCPOptions, probe tcp.TCPProbeFunc, clock tcpip.Clock, seed uint64) (*stack.Stack, error) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return build(opts, true, probe, stack.Options{
		Clock:      clock,
		RandSource: rand.NewSource(int64(seed)),
		SecureRNG:  randv2.NewChaCha8(key),
	})
}

// NewPromiscuous is New for a stack whose NIC will be promiscuous, such as
// a gateway that answers for every address. Such a stack must not treat
// local traffic specially: with HandleLocal on, a promiscuous NIC claims the
// sender's address too and drops the packet as a spoofed local one.
func NewPromiscuous(opts TCPOptions) (*stack.Stack, error) {
	return build(opts, false, nil, stack.Options{})
}

// build makes the stack; base gives the clock and random sources (zero:
// the real clock and random ones).
func build(opts TCPOptions, handleLocal bool, probe tcp.TCPProbeFunc, base stack.Options) (*stack.Stack, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	tcpFactory := tcp.NewProtocol
	if probe != nil && !opts.NoProbe {
		// NewProtocolProbe starts with Reno whatever is wanted; apply
		// below sets the configured congestion control after it.
		tcpFactory = tcp.NewProtocolProbe(probe)
	}
	s := stack.New(stack.Options{
		Clock:      base.Clock,
		RandSource: base.RandSource,
		SecureRNG:  base.SecureRNG,
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			// DAD off: addresses on our links are assigned, not negotiated, and a
			// tentative address would make IPv6 unusable for the first second.
			ipv6.NewProtocolWithOptions(ipv6.Options{}),
			arp.NewProtocol,
		},
		TransportProtocols: []stack.TransportProtocolFactory{
			tcpFactory, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
		HandleLocal: handleLocal,
	})
	if err := opts.apply(s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// setTCP sets one TCP protocol option and names the key on failure.
func setTCP(s *stack.Stack, key string, opt tcpip.SettableTransportProtocolOption) error {
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
		return fmt.Errorf("sysctl %s: %s", key, err)
	}
	return nil
}
