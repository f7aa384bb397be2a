package netstack

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// When a change made on a running stack takes effect. netstack reads most
// stack-wide TCP options once per endpoint (when it is made, at its
// handshake, when its sender starts), so a change reaches only connections
// made after it; the TIME-WAIT duration is read as a connection enters
// TIME-WAIT, so it reaches existing ones too. The probe is installed with
// the stack and is not changed on a running one.
const (
	AppliesLive    = "live"
	AppliesNew     = "new connections"
	AppliesAtStart = "at start only"
)

// liveKeys are the keys whose change reaches existing connections.
var liveKeys = map[string]bool{"tcp.time_wait": true}

// SysctlApplies says when a change of key (or one of its aliases) takes
// effect on a running stack; "" for an unknown key.
func SysctlApplies(key string) string {
	canon, ok := SysctlKey(key)
	switch {
	case !ok:
		return ""
	case canon == "tcp.probe", canon == "tcp.inline_processing":
		return AppliesAtStart
	case liveKeys[canon]:
		return AppliesLive
	}
	return AppliesNew
}

// SysctlKey returns ustack's name for key, which may be a Linux alias.
func SysctlKey(key string) (string, bool) {
	if _, ok := sysctls[key]; ok {
		return key, true
	}
	for k, s := range sysctls {
		for _, a := range s.aliases {
			if a == key {
				return k, true
			}
		}
	}
	return "", false
}

// SetLive changes one option on running stack s: o is left as it was
// unless the new value is valid and netstack took it.
func (o *TCPOptions) SetLive(s *stack.Stack, key, value string) error {
	if SysctlApplies(key) == AppliesAtStart {
		return fmt.Errorf("%s can only be set when the stack starts (--sysctl %s=%s)", key, key, value)
	}
	next := *o
	if err := next.Set(key, value); err != nil {
		return err
	}
	if err := next.Apply(s); err != nil {
		return err
	}
	*o = next
	return nil
}

// SysctlKeyHelp is what key sets, as SysctlHelp says it.
func SysctlKeyHelp(key string) string {
	s, ok := lookupSysctl(key)
	if !ok {
		return ""
	}
	return s.help
}
