package ustack_test

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack"
)

// TestTCPOptionsTakeEffect sets each key through Config.TCP and reads the
// option back from both netstacks of a pair.
func TestTCPOptionsTakeEffect(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		opt        tcpip.GettableTransportProtocolOption // read back into this
		want       any                                   // *opt must equal this
	}{
		{"tcp.cc", "reno", new(tcpip.CongestionControlOption), tcpip.CongestionControlOption("reno")},
		{"tcp.cc", "cubic", new(tcpip.CongestionControlOption), tcpip.CongestionControlOption("cubic")},
		{"tcp.sack", "0", new(tcpip.TCPSACKEnabled), tcpip.TCPSACKEnabled(false)},
		{"tcp.sack", "1", new(tcpip.TCPSACKEnabled), tcpip.TCPSACKEnabled(true)},
		{"tcp.rack", "0", new(tcpip.TCPRecovery), tcpip.TCPRecovery(0)},
		{"tcp.rack", "1", new(tcpip.TCPRecovery), tcpip.TCPRACKLossDetection},
		{"tcp.nagle", "1", new(tcpip.TCPDelayEnabled), tcpip.TCPDelayEnabled(true)},
		{"tcp.nagle", "0", new(tcpip.TCPDelayEnabled), tcpip.TCPDelayEnabled(false)},
		{"tcp.moderate_rcvbuf", "0", new(tcpip.TCPModerateReceiveBufferOption), tcpip.TCPModerateReceiveBufferOption(false)},
		{"tcp.wmem", "8192 65536 2097152", new(tcpip.TCPSendBufferSizeRangeOption), tcpip.TCPSendBufferSizeRangeOption{Min: 8192, Default: 65536, Max: 2097152}},
		{"tcp.rmem", "8192 131072 3145728", new(tcpip.TCPReceiveBufferSizeRangeOption), tcpip.TCPReceiveBufferSizeRangeOption{Min: 8192, Default: 131072, Max: 3145728}},
		{"tcp.min_rto", "50ms", new(tcpip.TCPMinRTOOption), tcpip.TCPMinRTOOption(50 * time.Millisecond)},
		{"tcp.time_wait", "5s", new(tcpip.TCPTimeWaitTimeoutOption), tcpip.TCPTimeWaitTimeoutOption(5 * time.Second)},
		{"net.ipv4.tcp_congestion_control", "reno", new(tcpip.CongestionControlOption), tcpip.CongestionControlOption("reno")},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			var cfg ustack.Config
			if err := cfg.TCP.Set(tc.key, tc.value); err != nil {
				t.Fatalf("Set: %v", err)
			}
			a, b := newPair(t, cfg, cfg)
			for _, s := range []*ustack.Stack{a, b} {
				if err := s.Netstack().TransportProtocolOption(tcp.ProtocolNumber, tc.opt); err != nil {
					t.Fatalf("reading the option back: %s", err)
				}
				if got := reflect.ValueOf(tc.opt).Elem().Interface(); got != tc.want {
					t.Errorf("netstack has %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestTCPDefaults checks the options a zero Config gives the netstack.
func TestTCPDefaults(t *testing.T) {
	a, _ := newPair(t, ustack.Config{}, ustack.Config{})
	ns := a.Netstack()
	var cc tcpip.CongestionControlOption
	var sack tcpip.TCPSACKEnabled
	var rec tcpip.TCPRecovery
	var nagle tcpip.TCPDelayEnabled
	var rcv tcpip.TCPReceiveBufferSizeRangeOption
	for _, o := range []tcpip.GettableTransportProtocolOption{&cc, &sack, &rec, &nagle, &rcv} {
		if err := ns.TransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			t.Fatal(err)
		}
	}
	if cc != "reno" || !bool(sack) || rec != tcpip.TCPRACKLossDetection || bool(nagle) || rcv.Max != 8<<20 {
		t.Errorf("defaults: cc %s, sack %v, recovery %d, nagle %v, rmem max %d; want reno, true, RACK, false, 8 MiB", cc, sack, rec, nagle, rcv.Max)
	}
}

// TestConfigErrors checks that a bad Config names the flag at fault.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ustack.Config
		flag string
	}{
		{"unknown cc", ustack.Config{TCP: ustack.TCPOptions{CongestionControl: "bbr"}}, "--cc"},
		{"mtu too small", ustack.Config{MTU: 1279}, "--mtu"},
		{"mtu too big", ustack.Config{MTU: 65536}, "--mtu"},
		{"mtu negative", ustack.Config{MTU: -1}, "--mtu"},
		{"bad wmem", ustack.Config{TCP: ustack.TCPOptions{SendBuffer: ustack.BufferRange{Min: 10, Default: 5, Max: 20}}}, "--sysctl"},
		{"min rto above max", ustack.Config{TCP: ustack.TCPOptions{MinRTO: time.Hour}}, "--sysctl"},
		{"two v4 gateways", ustack.Config{Gateways: []netip.Addr{netip.MustParseAddr("10.0.9.254"), netip.MustParseAddr("10.0.9.253")}}, "--gateway"},
		{"unspecified address", ustack.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/24")}}, "--ip"},
		{"multicast address", ustack.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("224.0.0.1/24")}}, "--ip"},
		{"invalid address", ustack.Config{Addrs: []netip.Prefix{{}}}, "--ip"},
		{"unknown attachment", ustack.Config{Net: "carrier-pigeon"}, "--net"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errs []error
			s, err := ustack.New(tc.cfg)
			if err == nil {
				s.Close()
			}
			errs = append(errs, err)
			if tc.cfg.Net == "" {
				a, b, err := ustack.NewPair(tc.cfg, ustack.Config{})
				if err == nil {
					a.Close()
					b.Close()
				}
				errs = append(errs, err)
			}
			for i, err := range errs {
				var ce *ustack.ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("call %d: %v (%T), want *ustack.ConfigError", i, err, err)
				}
				if ce.Flag != tc.flag {
					t.Errorf("call %d: Flag %q (%v), want %q", i, ce.Flag, err, tc.flag)
				}
			}
		})
	}
	t.Run("pair mtu mismatch", func(t *testing.T) {
		_, _, err := ustack.NewPair(ustack.Config{MTU: 1500}, ustack.Config{MTU: 9000})
		var ce *ustack.ConfigError
		if !errors.As(err, &ce) || ce.Flag != "--mtu" {
			t.Fatalf("NewPair with MTUs 1500 and 9000: %v, want a --mtu ConfigError", err)
		}
	})
}
