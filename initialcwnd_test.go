package ustack_test

import (
	"strconv"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack"
)

// tcp.initial_cwnd sets the window a new connection starts with, on both
// the connecting and the accepting side (netstack patch 0004; the pinned
// netstack has RFC 6928's 10 as a constant).
func TestInitialCwnd(t *testing.T) {
	for _, iw := range []int{1, 4, 10} {
		t.Run(strconv.Itoa(iw), func(t *testing.T) {
			var cfg ustack.Config
			if err := cfg.TCP.Set("tcp.initial_cwnd", strconv.Itoa(iw)); err != nil {
				t.Fatal(err)
			}
			a, b := newPair(t, cfg, cfg)
			c, s := connect(t, a, b, "tcp4", addrB4)
			defer c.Close()
			defer s.Close()
			for name, st := range map[string]*ustack.Stack{"connecting": a, "accepting": b} {
				seen := 0
				for _, te := range st.Netstack().RegisteredEndpoints() {
					ep, ok := te.(*tcp.Endpoint)
					if !ok || tcp.EndpointState(ep.State()) != tcp.StateEstablished {
						continue
					}
					seen++
					var info tcpip.TCPInfoOption
					if err := ep.GetSockOpt(&info); err != nil {
						t.Fatal(err)
					}
					if info.SndCwnd != uint32(iw) {
						t.Errorf("%s side's first window %d segments, want %d", name, info.SndCwnd, iw)
					}
				}
				if seen != 1 {
					t.Errorf("%s side: %d established endpoints, want 1", name, seen)
				}
			}
		})
	}
	var cfg ustack.Config
	for _, bad := range []string{"0", "x", "1001"} {
		if err := cfg.TCP.Set("tcp.initial_cwnd", bad); err == nil {
			t.Errorf("tcp.initial_cwnd=%s taken", bad)
		}
	}
}
