package netstack

import (
	"strings"
	"testing"
	"time"
)

func TestSetGet(t *testing.T) {
	for _, tc := range []struct {
		key, value, want string
	}{
		{"tcp.cc", "reno", "reno"},
		{"tcp.cc", "cubic", "cubic"},
		{"net.ipv4.tcp_congestion_control", "reno", "reno"},
		{"tcp.sack", "0", "0"},
		{"tcp.sack", "on", "1"},
		{"net.ipv4.tcp_sack", "false", "0"},
		{"tcp.rack", "0", "0"},
		{"net.ipv4.tcp_recovery", "1", "1"},
		{"tcp.nagle", "1", "1"},
		{"tcp.nagle", "no", "0"},
		{"tcp.moderate_rcvbuf", "0", "0"},
		{"tcp.wmem", "4096 16384 4194304", "4096 16384 4194304"},
		{"tcp.wmem", " 4096,16384,4194304 ", "4096 16384 4194304"},
		{"net.ipv4.tcp_rmem", "4096\t131072\t6291456", "4096 131072 6291456"},
		{"tcp.min_rto", "50ms", "50ms"},
		{"tcp.min_rto", "1s", "1s"},
		{"tcp.time_wait", "5s", "5s"},
		{"tcp.delayed_ack", "0", "0s"},
		{"tcp.delayed_ack", "10ms", "10ms"},
		{"tcp.delayed_ack", "200ms", "200ms"},
		{"tcp.syn_linear_timeouts", "0", "0"},
		{"net.ipv4.tcp_syn_linear_timeouts", "4", "4"},
		{"tcp.syn_linear_timeouts", "16", "16"},
		{"tcp.tw_reuse", "0", "0"},
		{"net.ipv4.tcp_tw_reuse", "1", "1"},
		{"tcp.probe", "0", "0"},
		{"tcp.probe", "1", "1"},
		{"tcp.inline_processing", "0", "0"},
		{"tcp.inline_processing", "on", "1"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			var o TCPOptions
			if err := o.Set(tc.key, tc.value); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if got, ok := o.Get(tc.key); !ok || got != tc.want {
				t.Errorf("Get = %q, %v; want %q", got, ok, tc.want)
			}
			if err := o.Validate(); err != nil {
				t.Errorf("Validate after a successful Set: %v", err)
			}
		})
	}
}

func TestSetRejects(t *testing.T) {
	for _, tc := range []struct{ key, value, errHas string }{
		{"tcp.cc", "nosuch", "unknown congestion control"},
		{"tcp.cc", "Reno", "unknown congestion control"},
		{"tcp.sack", "2", "want 1 or 0"},
		{"tcp.sack", "", "want 1 or 0"},
		{"tcp.rack", "yes please", "want 1 or 0"},
		{"tcp.nagle", "-1", "want 1 or 0"},
		{"tcp.moderate_rcvbuf", "x", "want 1 or 0"},
		{"tcp.inline_processing", "2", "want 1 or 0"},
		{"tcp.wmem", "4096 16384", "three sizes"},
		{"tcp.wmem", "4096 16384 1024", "MIN <= DEFAULT <= MAX"},
		{"tcp.rmem", "0 1 2", "not a positive byte count"},
		{"tcp.rmem", "a b c", "not a positive byte count"},
		{"tcp.rmem", "1 2 99999999999999999999", "not a positive byte count"},
		{"tcp.min_rto", "-1s", "positive duration"},
		{"tcp.min_rto", "fast", "positive duration"},
		{"tcp.min_rto", "0", "positive duration"},
		{"tcp.min_rto", "10m", "at most"},
		{"tcp.time_wait", "0s", "positive duration"},
		{"tcp.delayed_ack", "201ms", "at most 200ms"},
		{"tcp.delayed_ack", "-1ms", "want 0 or a duration"},
		{"tcp.delayed_ack", "soon", "want 0 or a duration"},
		{"tcp.time_wait", "60", "positive duration"},
		{"tcp.tw_reuse", "3", "want 0, 1 or 2"},
		{"tcp.syn_linear_timeouts", "17", "from 0 to 16"},
		{"tcp.syn_linear_timeouts", "-1", "from 0 to 16"},
		{"tcp.syn_linear_timeouts", "some", "from 0 to 16"},
		{"tcp.nosuchkey", "1", "unknown key"},
		{"", "1", "unknown key"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			var o TCPOptions
			err := o.Set(tc.key, tc.value)
			if err == nil {
				t.Fatalf("Set(%q, %q) succeeded", tc.key, tc.value)
			}
			if !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("Set(%q, %q): %v; want it to mention %q", tc.key, tc.value, err, tc.errHas)
			}
			if o != (TCPOptions{}) {
				t.Errorf("a rejected Set changed the options: %+v", o)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      TCPOptions
		errHas string // "" means valid
	}{
		{"zero", TCPOptions{}, ""},
		{"reno", TCPOptions{CongestionControl: "reno"}, ""},
		{"bad cc", TCPOptions{CongestionControl: "nosuch"}, "tcp.cc"},
		{"wmem order", TCPOptions{SendBuffer: BufferRange{10, 5, 20}}, "tcp.wmem"},
		{"rmem zero min", TCPOptions{ReceiveBuffer: BufferRange{0, 5, 20}}, "tcp.rmem"},
		{"negative rto", TCPOptions{MinRTO: -time.Second}, "tcp.min_rto"},
		{"rto above max", TCPOptions{MinRTO: 3 * time.Minute}, "tcp.min_rto"},
		{"negative time-wait", TCPOptions{TimeWait: -time.Second}, "tcp.time_wait"},
		{"delayed ACK off", TCPOptions{DelayedAck: -1}, ""},
		{"delayed ACK above Linux's longest", TCPOptions{DelayedAck: time.Second}, "tcp.delayed_ack"},
		{"tw_reuse out of range", TCPOptions{TimeWaitReuse: "yes"}, "tcp.tw_reuse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.errHas != "" && err == nil:
				t.Fatalf("Validate accepted %+v", tc.o)
			case tc.errHas != "" && !strings.Contains(err.Error(), tc.errHas):
				t.Errorf("Validate: %v; want it to name %s", err, tc.errHas)
			}
			// New agrees with Validate.
			s, nerr := New(tc.o)
			if nerr == nil {
				s.Close()
			}
			if (nerr == nil) != (err == nil) {
				t.Errorf("Validate says %v but New says %v", err, nerr)
			}
		})
	}
}

func TestSysctlHelp(t *testing.T) {
	help := SysctlHelp()
	lines := strings.Split(strings.TrimSuffix(help, "\n"), "\n")
	keys := SysctlKeys()
	if len(lines) != len(keys) {
		t.Fatalf("SysctlHelp has %d lines for %d keys:\n%s", len(lines), len(keys), help)
	}
	var zero TCPOptions
	for i, k := range keys {
		def, ok := zero.Get(k)
		if !ok {
			t.Errorf("Get(%q) of a listed key failed", k)
		}
		if f := strings.Fields(lines[i]); len(f) == 0 || f[0] != k {
			t.Errorf("line %d = %q, want it to start with %s", i, lines[i], k)
		}
		if !strings.Contains(lines[i], "default \""+def+"\"") {
			t.Errorf("line for %s = %q, want its default %q", k, lines[i], def)
		}
		// Every default shown can be given back to Set.
		var o TCPOptions
		if err := o.Set(k, def); err != nil {
			t.Errorf("Set(%q, default %q): %v", k, def, err)
		}
	}
	for _, want := range []string{"tcp.cc", "tcp.sack", "tcp.rack", "tcp.nagle", "tcp.wmem", "tcp.rmem", "tcp.min_rto", "tcp.time_wait", "net.ipv4.tcp_congestion_control"} {
		if !strings.Contains(help, want) {
			t.Errorf("SysctlHelp does not mention %s", want)
		}
	}
	if _, ok := zero.Get("tcp.nosuchkey"); ok {
		t.Error("Get of an unknown key reported ok")
	}
}
