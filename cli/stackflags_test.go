package cli

import (
	"errors"
	"fmt"
	"reflect"
	"syscall"
	"testing"

	"github.com/ustack/ustack"
)

// TestNetFlag: --net's syntax gives the typed attachment, whose String
// gives the syntax back.
func TestNetFlag(t *testing.T) {
	for _, tc := range []struct {
		arg     string
		want    ustack.Attachment
		wantErr string
	}{
		{arg: "nat", want: ustack.NAT{}},
		{arg: "tap:t0", want: ustack.Tap{Name: "t0"}},
		{arg: "tap:t0,create", want: ustack.Tap{Name: "t0", Create: true}},
		{arg: "host:eth0", want: ustack.Host{Iface: "eth0"}},
		{arg: "bogus", wantErr: `unknown attachment "bogus" (available: nat, tap:NAME[,create], host:IFACE[,ephemeral=N], switch:NAME, pcap:FILE[,out=FILE][,speed=realtime|max|N])`},
		{arg: "nat:x", wantErr: `unknown attachment "nat:x" (available: nat, tap:NAME[,create], host:IFACE[,ephemeral=N], switch:NAME, pcap:FILE[,out=FILE][,speed=realtime|max|N])`},
		{arg: "", wantErr: `unknown attachment "" (available: nat, tap:NAME[,create], host:IFACE[,ephemeral=N], switch:NAME, pcap:FILE[,out=FILE][,speed=realtime|max|N])`},
		{arg: "tap:", wantErr: `"tap:": want tap:NAME or tap:NAME,create`},
		{arg: "tap:t0,bogus", wantErr: `"tap:t0,bogus": want tap:NAME or tap:NAME,create`},
		{arg: "host:eth0,ephemeral=1024", want: ustack.Host{Iface: "eth0", EphemeralPorts: 1024}},
		{arg: "host:", wantErr: `"host:": want host:IFACE[,ephemeral=N] (e.g. host:eth0)`},
		{arg: "host:a,b", wantErr: `"host:a,b": unknown option "b" (host takes ephemeral=N)`},
		{arg: "host:a,ephemeral=0", wantErr: `"host:a,ephemeral=0": ephemeral=0: want the number of host ports for outgoing connections, 1 to 16384 (default 64)`},
		{arg: "host:a,ephemeral=x", wantErr: `"host:a,ephemeral=x": ephemeral=x: want the number of host ports for outgoing connections, 1 to 16384 (default 64)`},
		{arg: "pcap:in.pcap", want: ustack.Pcap{In: "in.pcap", Speed: 1}},
		{arg: "pcap:in.pcap,out=o.pcap,speed=max", want: ustack.Pcap{In: "in.pcap", Out: "o.pcap"}},
		{arg: "pcap:in.pcap,speed=10,mac=keep", want: ustack.Pcap{In: "in.pcap", Speed: 10, KeepMAC: true}},
		{arg: "pcap:", wantErr: `"pcap:": want pcap:FILE[,out=FILE][,speed=realtime|max|N], FILE a capture to replay`},
		{arg: "pcap:a,speed=fast", wantErr: `"pcap:a,speed=fast": speed=fast: want realtime, max or a positive factor such as 10`},
		{arg: "pcap:a,speed=0", wantErr: `"pcap:a,speed=0": speed=0: want realtime, max or a positive factor such as 10`},
		{arg: "pcap:a,out=", wantErr: `"pcap:a,out=": out= needs a file to write what the stack sends`},
		{arg: "pcap:a,bogus", wantErr: `"pcap:a,bogus": unknown option "bogus" (pcap takes out=FILE, speed=realtime|max|N and mac=keep)`},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			var got ustack.Attachment = ustack.NAT{}
			err := netValue{&got}.Set(tc.arg)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Set(%q): %v, want error %q", tc.arg, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Set(%q): %#v, %v; want %#v", tc.arg, got, err, tc.want)
			}
			if s := got.String(); s != tc.arg {
				t.Errorf("%#v.String() = %q, want %q back", got, s, tc.arg)
			}
		})
	}
}

// TestConfigErrorFlags: a stack's ConfigError is reported under the flag
// that sets the field; a field no flag sets keeps its name.
func TestConfigErrorFlags(t *testing.T) {
	for _, tc := range []struct {
		field string
		err   error
		want  string
	}{
		{"Net", errors.New("tap:t9: device not found"), "--net: tap:t9: device not found"},
		{"Tap.Name", errors.New("empty"), "--net: empty"},
		{"Host.Iface", errors.New("bad"), "--net: bad"},
		{"Addrs", errors.New("x"), "--ip: x"},
		{"Gateways", errors.New("x"), "--gateway: x"},
		{"MTU", errors.New("x"), "--mtu: x"},
		{"TCP.CongestionControl", errors.New("x"), "--cc: x"},
		{"TCP", errors.New("x"), "--sysctl: x"},
		{"Pcap", errors.New("x"), "--pcap: x"},
		{"NAT.DNSUpstreams", errors.New("x"), "--dns-upstream: x"},
		{"Host.Ports", errors.New("x"), "--host-port: x"},
		{"Host.Portd", errors.New("x"), "--portd: x"},
		{"BusyPoll", errors.New("x"), "--busy-poll: x"},
		{"LinkLoss", errors.New("x"), "LinkLoss: x"},
		{"NAT.Publish", fmt.Errorf("listen: %w", syscall.EADDRINUSE),
			"-p: listen: address already in use (the host port is taken: choose another HOSTPORT or stop what listens on it)"},
		{"NAT.Publish", fmt.Errorf("listen: %w", syscall.EACCES),
			"-p: listen: permission denied (ports below 1024 need privilege: choose a HOSTPORT of 1024 or more)"},
	} {
		if got := describeConfigError(&ustack.ConfigError{Field: tc.field, Err: tc.err}); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.field, got, tc.want)
		}
	}
}

// TestConfigAttachmentFlags: the flags of an attachment land in it, and
// those of another attachment are ignored.
func TestConfigAttachmentFlags(t *testing.T) {
	pub, err := ustack.ParsePortMapping("8080:80")
	if err != nil {
		t.Fatal(err)
	}
	ports := []ustack.HostPort{{Port: 80}}
	common := stackFlags{publish: []ustack.PortMapping{pub}, noHostLoopback: true, hostPorts: ports, portd: "/run/p.sock"}
	for _, tc := range []struct {
		net  ustack.Attachment
		want ustack.Attachment
	}{
		{ustack.NAT{}, ustack.NAT{NoHostLoopback: true, Publish: []ustack.PortMapping{pub}}},
		{ustack.Host{Iface: "eth0"}, ustack.Host{Iface: "eth0", Ports: ports, Portd: "/run/p.sock"}},
		{ustack.Tap{Name: "t0"}, ustack.Tap{Name: "t0"}},
	} {
		f := common
		f.net = tc.net
		cfg, cleanup, err := f.config()
		if err != nil {
			t.Fatalf("%v: %v", tc.net, err)
		}
		cleanup()
		if !reflect.DeepEqual(cfg.Net, tc.want) {
			t.Errorf("--net %v: Config.Net %#v, want %#v", tc.net, cfg.Net, tc.want)
		}
	}
}
