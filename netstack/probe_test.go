package netstack

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// NewProtocolProbe starts TCP with Reno; the configured congestion
// control must still be the one in effect with a probe installed.
func TestProbeKeepsCongestionControl(t *testing.T) {
	probe := func(*tcp.TCPEndpointState) {}
	for _, tc := range []struct {
		name string
		opts TCPOptions
		want string
	}{
		{"default", TCPOptions{}, "reno"},
		{"cubic", TCPOptions{CongestionControl: "cubic"}, "cubic"},
		{"reno", TCPOptions{CongestionControl: "reno"}, "reno"},
	} {
		for _, withProbe := range []bool{false, true} {
			p := tcp.TCPProbeFunc(nil)
			if withProbe {
				p = probe
			}
			s, err := NewWithProbe(tc.opts, p)
			if err != nil {
				t.Fatalf("%s: NewWithProbe: %v", tc.name, err)
			}
			var cc tcpip.CongestionControlOption
			if err := s.TransportProtocolOption(tcp.ProtocolNumber, &cc); err != nil {
				t.Fatalf("%s: reading tcp.cc: %v", tc.name, err)
			}
			s.Close()
			if string(cc) != tc.want {
				t.Errorf("%s (probe %v): congestion control %q, want %q", tc.name, withProbe, cc, tc.want)
			}
		}
	}
}
