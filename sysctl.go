package ustack

import (
	"fmt"

	"github.com/ustack/ustack/netstack"
)

// SysctlSetting is one stack-wide TCP option of a running stack.
type SysctlSetting struct {
	Key     string // ustack's name, e.g. tcp.sack
	Value   string // the value in force
	Applies string // when a change takes effect: netstack.AppliesLive, AppliesNew or AppliesAtStart
	Help    string
}

// Sysctl lists the stack-wide TCP options in force, sorted by key.
func (s *Stack) Sysctl() []SysctlSetting {
	s.tcpMu.Lock()
	defer s.tcpMu.Unlock()
	var out []SysctlSetting
	for _, k := range netstack.SysctlKeys() {
		v, _ := s.tcp.Get(k)
		out = append(out, SysctlSetting{Key: k, Value: v, Applies: netstack.SysctlApplies(k), Help: netstack.SysctlKeyHelp(k)})
	}
	return out
}

// SetSysctl changes one stack-wide TCP option (a key Sysctl lists, or its
// Linux alias) on the running stack and returns the setting now in force.
func (s *Stack) SetSysctl(key, value string) (SysctlSetting, error) {
	s.tcpMu.Lock()
	defer s.tcpMu.Unlock()
	if err := s.tcp.SetLive(s.ns, key, value); err != nil {
		return SysctlSetting{}, err
	}
	canon, ok := netstack.SysctlKey(key)
	if !ok {
		return SysctlSetting{}, fmt.Errorf("unknown key %q", key)
	}
	v, _ := s.tcp.Get(canon)
	return SysctlSetting{Key: canon, Value: v, Applies: netstack.SysctlApplies(canon), Help: netstack.SysctlKeyHelp(canon)}, nil
}
