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
		{"tcp.tw_reuse", "0", new(tcpip.TCPTimeWaitReuseOption), tcpip.TCPTimeWaitReuseDisabled},
		{"tcp.initial_cwnd", "1", new(tcpip.TCPInitialCongestionWindowOption), tcpip.TCPInitialCongestionWindowOption(1)},
		{"tcp.initial_cwnd", "10", new(tcpip.TCPInitialCongestionWindowOption), tcpip.TCPInitialCongestionWindowOption(10)},
		{"net.ipv4.tcp_tw_reuse", "1", new(tcpip.TCPTimeWaitReuseOption), tcpip.TCPTimeWaitReuseGlobal},
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

// TestConfigErrors checks that a bad Config names the field at fault.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   ustack.Config
		field string
		pair  bool // NewPair refuses it too
	}{
		{"unknown cc", ustack.Config{TCP: ustack.TCPOptions{CongestionControl: "nosuch"}}, "TCP.CongestionControl", true},
		{"mtu too small", ustack.Config{MTU: 1279}, "MTU", true},
		{"mtu too big", ustack.Config{MTU: 65536}, "MTU", true},
		{"mtu negative", ustack.Config{MTU: -1}, "MTU", true},
		{"bad wmem", ustack.Config{TCP: ustack.TCPOptions{SendBuffer: ustack.BufferRange{Min: 10, Default: 5, Max: 20}}}, "TCP", true},
		{"min rto above max", ustack.Config{TCP: ustack.TCPOptions{MinRTO: time.Hour}}, "TCP", true},
		{"two v4 gateways", ustack.Config{Gateways: []netip.Addr{netip.MustParseAddr("10.0.9.254"), netip.MustParseAddr("10.0.9.253")}}, "Gateways", true},
		{"unspecified address", ustack.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/24")}}, "Addrs", true},
		{"multicast address", ustack.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("224.0.0.1/24")}}, "Addrs", true},
		{"invalid address", ustack.Config{Addrs: []netip.Prefix{{}}}, "Addrs", true},
		{"busy poll on nat", ustack.Config{BusyPoll: time.Millisecond}, "BusyPoll", true},
		{"busy poll out of range", ustack.Config{BusyPoll: time.Second}, "BusyPoll", true},
		{"pair given to New", ustack.Config{Net: ustack.Pair{}}, "Net", false},
		{"nil tap", ustack.Config{Net: (*ustack.Tap)(nil)}, "Net", false},
		{"tap given to NewPair", ustack.Config{Net: ustack.Tap{Name: "t0"}, Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.9.1/24")}}, "Net", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errs []error
			if _, isTap := tc.cfg.Net.(ustack.Tap); !isTap {
				s, err := ustack.New(tc.cfg)
				if err == nil {
					s.Close()
				}
				errs = append(errs, err)
			}
			if tc.pair {
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
				if ce.Field != tc.field {
					t.Errorf("call %d: Field %q (%v), want %q", i, ce.Field, err, tc.field)
				}
			}
		})
	}
	t.Run("pair mtu mismatch", func(t *testing.T) {
		_, _, err := ustack.NewPair(ustack.Config{MTU: 1500}, ustack.Config{MTU: 9000})
		var ce *ustack.ConfigError
		if !errors.As(err, &ce) || ce.Field != "MTU" {
			t.Fatalf("NewPair with MTUs 1500 and 9000: %v, want an MTU ConfigError", err)
		}
	})
}

// TestAttachment: a stack reports the attachment it was built on, typed,
// and names it for display.
func TestAttachment(t *testing.T) {
	s, err := ustack.New(ustack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a, ok := s.Attachment().(ustack.NAT); !ok || a.String() != "nat" {
		t.Errorf("default stack: Attachment %#v (%v), want NAT \"nat\"", s.Attachment(), s.Attachment())
	}
	pub, _ := ustack.ParsePortMapping("127.0.0.1:0:80")
	n, err := ustack.New(ustack.Config{Net: ustack.NAT{NoHostLoopback: true, Publish: []ustack.PortMapping{pub}}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if a, ok := n.Attachment().(ustack.NAT); !ok || !a.NoHostLoopback || len(a.Publish) != 1 {
		t.Errorf("nat stack: Attachment %#v, want the NAT it was given", n.Attachment())
	}
	a, b, err := ustack.NewPair(ustack.Config{}, ustack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	if _, ok := a.Attachment().(ustack.Pair); !ok || a.Attachment().String() != "pair" {
		t.Errorf("pair stack: Attachment %#v, want Pair", a.Attachment())
	}
	for _, tc := range []struct {
		a    ustack.Attachment
		want string
	}{
		{ustack.NAT{}, "nat"},
		{ustack.Tap{Name: "t0"}, "tap:t0"},
		{ustack.Tap{Name: "t0", Create: true}, "tap:t0,create"},
		{ustack.Host{Iface: "eth0", Ports: []ustack.HostPort{{Port: 80}}}, "host:eth0"},
		{ustack.Pair{}, "pair"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.a, got, tc.want)
		}
	}
}
