package ustack

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ustack/ustack/link"
)

// newTap attaches a stack to a tap device: spec is "NAME" or
// "NAME,create". The stack has its own MAC and the addresses of --ip; the
// host sees it as a machine on the tap's link.
func newTap(cfg Config, spec string) (*Stack, error) {
	name, opt, _ := strings.Cut(spec, ",")
	if name == "" || opt != "" && opt != "create" {
		return nil, configErr("--net", "%q: want tap:NAME or tap:NAME,create", "tap:"+spec)
	}
	if len(cfg.Addrs) == 0 {
		return nil, configErr("--ip", "--net tap needs the stack's own address (e.g. --ip 10.9.0.2/24)")
	}
	tap, err := link.OpenTap(name, opt == "create")
	if err != nil {
		if errors.Is(err, link.ErrNoTap) {
			return nil, configErr("--net", "tap:%s: device not found (create it with: ip tuntap add %s mode tap user $USER, or use tap:%s,create with CAP_NET_ADMIN)", name, name, name)
		}
		return nil, &ConfigError{Flag: "--net", Err: fmt.Errorf("tap:%w", err)}
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
	s.net = "tap:" + name
	return s, nil
}
