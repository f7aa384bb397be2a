package netstack

import (
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// TestSetLive: a change on a running stack reaches netstack's option and
// the options' record; a bad one changes neither.
func TestSetLive(t *testing.T) {
	s, err := New(TCPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var o TCPOptions
	sack := func() bool {
		var v tcpip.TCPSACKEnabled
		if err := s.TransportProtocolOption(tcp.ProtocolNumber, &v); err != nil {
			t.Fatal(err)
		}
		return bool(v)
	}
	if !sack() {
		t.Fatal("SACK off at start")
	}
	if err := o.SetLive(s, "net.ipv4.tcp_sack", "0"); err != nil {
		t.Fatal(err)
	}
	if v, _ := o.Get("tcp.sack"); v != "0" || sack() {
		t.Errorf("after tcp.sack=0: recorded %q, netstack's SACK %v", v, sack())
	}
	for _, tc := range []struct{ key, value, want string }{
		{"tcp.sack", "maybe", "want 1 or 0"},
		{"tcp.nosuch", "1", "unknown key"},
		{"tcp.probe", "0", "only be set when the stack starts"},
		{"tcp.wmem", "10 5 1", "MIN <= DEFAULT <= MAX"},
	} {
		before := o
		if err := o.SetLive(s, tc.key, tc.value); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetLive(%s=%s): %v; want an error saying %q", tc.key, tc.value, err, tc.want)
		}
		if o != before {
			t.Errorf("SetLive(%s=%s) failed but changed the options", tc.key, tc.value)
		}
	}
}

func TestSysctlApplies(t *testing.T) {
	for key, want := range map[string]string{
		"tcp.time_wait": AppliesLive, "tcp.sack": AppliesNew, "net.ipv4.tcp_congestion_control": AppliesNew,
		"tcp.probe": AppliesAtStart, "tcp.inline_processing": AppliesAtStart, "tcp.nosuch": "",
	} {
		if got := SysctlApplies(key); got != want {
			t.Errorf("SysctlApplies(%q) = %q, want %q", key, got, want)
		}
	}
	// Every key is classified.
	for _, k := range SysctlKeys() {
		if SysctlApplies(k) == "" {
			t.Errorf("%s has no class", k)
		}
	}
}
