package cli

import (
	"testing"

	"github.com/ustack/ustack/control/api"
)

func intp(n int) *int { return &n }

// formatSS lays out rows as ss -tuni does on Linux: columns padded to the
// widest cell, addresses right-aligned on the colon, -i details after a tab.
func TestFormatSS(t *testing.T) {
	estab := api.Socket{Netid: "tcp", State: "ESTAB", RecvQ: intp(0), SendQ: intp(12),
		Local: api.Addr{IP: "10.0.2.15", Port: 40328}, Peer: api.Addr{IP: "10.0.2.2", Port: 80},
		Process: &api.Process{PID: 123, Comm: "curl"},
		TCP: &api.TCPInfo{CC: "cubic", RTOMs: 204, RTTMs: 0.4124, RTTVarMs: 0.206, Cwnd: 10, Ssthresh: 7, SegsOut: 5, SegsIn: 4, Retrans: 3,
			ControlBlock: &api.ControlBlock{SndWscale: 7, RcvWscale: 7, MSS: 1448, SndWnd: 65535, RcvWnd: 1048576, SndUna: 1, SndNxt: 2, RcvNxt: 3, SackedOut: 2}}}
	listen := api.Socket{Netid: "tcp", State: "LISTEN", Local: api.Addr{Port: 80, V6: true, Any: true}, Peer: api.Addr{V6: true, Any: true},
		TCP: &api.TCPInfo{CC: "cubic", RTOMs: 1000, Cwnd: 10, Ssthresh: 0xffffffff}}
	udp6 := api.Socket{Netid: "udp", State: "UNCONN", RecvQ: intp(0), SendQ: intp(0), Local: api.Addr{IP: "fd00::15", Port: 53, V6: true}, Peer: api.Addr{V6: true}}
	service := func(port uint16, netid string) string {
		if port == 80 && netid == "tcp" {
			return "http"
		}
		return ""
	}
	tests := []struct {
		name  string
		socks []api.Socket
		o     ssOptions
		want  string
	}{
		{"numeric", []api.Socket{estab}, ssOptions{numeric: true},
			"Netid State Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n" +
				"tcp   ESTAB 0      12         10.0.2.15:40328     10.0.2.2:80\n"},
		{"services, processes", []api.Socket{estab}, ssOptions{processes: true}, "" +
			"Netid State Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n" +
			"tcp   ESTAB 0      12         10.0.2.15:40328     10.0.2.2:http users:((\"curl\",pid=123,fd=-))\n"},
		{"info", []api.Socket{estab, listen}, ssOptions{info: true, numeric: true}, "" +
			"Netid State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n" +
			"tcp   ESTAB  0      12         10.0.2.15:40328     10.0.2.2:80\n" +
			"\t cubic wscale:7,7 rto:204 rtt:0.412/0.206 mss:1448 cwnd:10 ssthresh:7 segs_out:5 segs_in:4 retrans:3 sacked:2 snd_wnd:65535 rcv_wnd:1048576 snd_una:1 snd_nxt:2 rcv_nxt:3\n" +
			"tcp   LISTEN -      -                  *:80               *:*\n" +
			"\t cubic rto:1000 cwnd:10 segs_out:0 segs_in:0\n"},
		{"ipv6", []api.Socket{udp6}, ssOptions{numeric: true}, "" +
			"Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n" +
			"udp   UNCONN 0      0         [fd00::15]:53           [::]:*\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatSS(tc.socks, tc.o, service); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestSSFilter(t *testing.T) {
	socks := []api.Socket{
		{Netid: "tcp", State: "ESTAB", Local: api.Addr{IP: "10.0.2.15"}},
		{Netid: "tcp", State: "LISTEN", Local: api.Addr{V6: true}},
		{Netid: "udp", State: "UNCONN"},
		{Netid: "udp", State: "ESTAB", Local: api.Addr{IP: "fd00::15", V6: true}},
		{Netid: "tcp", State: "TIME-WAIT"},
		{Netid: "icmp", State: "UNCONN"},
	}
	tests := []struct {
		o    ssOptions
		want []int
	}{
		{ssOptions{}, []int{0, 3, 4}},
		{ssOptions{tcp: true}, []int{0, 4}},
		{ssOptions{udp: true}, []int{3}},
		{ssOptions{listening: true}, []int{1, 2, 5}},
		{ssOptions{listening: true, tcp: true}, []int{1}},
		{ssOptions{all: true}, []int{0, 1, 2, 3, 4, 5}},
		{ssOptions{all: true, v6: true}, []int{1, 3}},
		{ssOptions{all: true, v4: true, udp: true}, []int{2}},
		{ssOptions{all: true, tcp: true, udp: true}, []int{0, 1, 2, 3, 4}},
	}
	for _, tc := range tests {
		got := tc.o.filter(socks)
		var idx []int
		for _, g := range got {
			for i, s := range socks {
				if s == g {
					idx = append(idx, i)
				}
			}
		}
		if len(idx) != len(tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.o, idx, tc.want)
			continue
		}
		for i := range idx {
			if idx[i] != tc.want[i] {
				t.Errorf("%+v: got %v, want %v", tc.o, idx, tc.want)
				break
			}
		}
	}
}
