package ustack

import (
	"crypto/rand"
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ustack/ustack/link"
	"github.com/ustack/ustack/vswitch"
)

// Switch attaches the stack to a port of a user-space Ethernet switch
// (ustack switch NAME, package vswitch) run by the same user: the stack has
// its own random MAC and the addresses of Config.Addrs (required), and
// reaches the other stacks on the switch as machines on one Ethernet
// segment. No privilege is needed. Config.MTU defaults to the switch's and
// may not exceed it. When the switch stops, the stack's link is cut.
type Switch struct {
	// Name is the switch's.
	Name string
	// Label names the stack's port in the switch's status (the commands
	// give the stack's name); it may be empty.
	Label string
}

func (s Switch) String() string { return "switch:" + s.Name }

func (s Switch) attach(cfg Config) (*Stack, error) { return newSwitchPort(cfg, s) }

func newSwitchPort(cfg Config, att Switch) (*Stack, error) {
	if att.Name == "" {
		return nil, configErr("Switch.Name", "empty (name the switch, e.g. switch:lan)")
	}
	if len(cfg.Addrs) == 0 {
		return nil, configErr("Addrs", "--net switch needs the stack's own address (e.g. --ip 10.9.0.2/24)")
	}
	if cfg.BusyPoll > 0 {
		return nil, configErr("BusyPoll", "applies to the tap and host attachments only: a switch port is a socket to the switch (leave --busy-poll out)")
	}
	port, err := vswitch.Attach(att.Name, att.Label, cfg.MTU)
	if err != nil {
		var me *vswitch.MTUError
		if errors.As(err, &me) {
			return nil, &ConfigError{Field: "MTU", Err: err}
		}
		return nil, configErr("Net", "switch:%s: %v", att.Name, err)
	}
	cfg.MTU = port.MTU
	ep, err := link.NewSocketEndpoint(port.Fd, att.String(), cfg.MTU, randomMAC())
	if err != nil {
		return nil, err
	}
	s, err := newStack(cfg, ep, ethernetFraming)
	if err != nil {
		ep.Close()
		return nil, err
	}
	link.CountDropsIn(ep, s.ns.Stats())
	s.net = att
	return s, nil
}

// randomMAC is a locally administered unicast address: stacks in
// different processes on one switch cannot agree on numbers, and 46
// random bits make a clash unlikely.
func randomMAC() tcpip.LinkAddress {
	var b [6]byte
	rand.Read(b[:])
	b[0] = b[0]&^0x01 | 0x02
	return tcpip.LinkAddress(b[:])
}
