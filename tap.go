package ustack

import (
	"errors"
	"fmt"

	"github.com/ustack/ustack/link"
)

// newTap attaches a stack to the tap device att.Name. The stack has its
// own MAC and the addresses of cfg.Addrs; the host sees it as a machine on
// the tap's link.
func newTap(cfg Config, att Tap) (*Stack, error) {
	name := att.Name
	if name == "" {
		return nil, configErr("Tap.Name", "empty (name the TAP device, e.g. tap0)")
	}
	if len(cfg.Addrs) == 0 {
		return nil, configErr("Addrs", "--net tap needs the stack's own address (e.g. --ip 10.9.0.2/24)")
	}
	tap, err := link.OpenTap(name, att.Create)
	if err != nil {
		if errors.Is(err, link.ErrNoTap) {
			return nil, configErr("Net", "tap:%s: device not found (create it with: ip tuntap add %s mode tap user $USER, or use tap:%s,create with CAP_NET_ADMIN)", name, name, name)
		}
		return nil, &ConfigError{Field: "Net", Err: fmt.Errorf("tap:%w", err)}
	}
	if cfg.MTU == 0 {
		if cfg.MTU, err = tap.MTU(); err != nil {
			tap.Close()
			return nil, err
		}
	}
	ep, err := tap.Endpoint(cfg.MTU, cfg.BusyPoll)
	if err != nil {
		tap.Close()
		return nil, err
	}
	s, err := newStack(cfg, ep, ethernetFraming)
	if err != nil {
		tap.Close()
		return nil, err
	}
	link.CountDropsIn(ep, s.ns.Stats())
	// The fd is closed after the stack, whose NIC reads from it, is gone.
	s.closers = append([]func() error{tap.Close}, s.closers...)
	s.net = att
	return s, nil
}
