package api

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestPingRequestQuery: what Path encodes, SetQuery reads back; absent
// parameters keep the values given, and a malformed one is named.
func TestPingRequestQuery(t *testing.T) {
	want := PingRequest{Host: "fd09::2", Count: 3, Interval: 200 * time.Millisecond, Timeout: 2 * time.Second, Size: 0}
	u, err := url.Parse(want.Path())
	if err != nil || u.Path != "/v1/ping" {
		t.Fatalf("Path() = %q (%v)", want.Path(), err)
	}
	got := PingRequest{Size: 56}
	if err := got.SetQuery(u.Query()); err != nil || got != want {
		t.Errorf("SetQuery(Path()) = %+v, %v; want %+v", got, err, want)
	}

	defaults := PingRequest{Count: 0, Interval: time.Second, Timeout: 10 * time.Second, Size: 56}
	got = defaults
	if err := got.SetQuery(url.Values{"host": {"h"}}); err != nil || got != (PingRequest{Host: "h", Interval: time.Second, Timeout: 10 * time.Second, Size: 56}) {
		t.Errorf("only host: %+v, %v", got, err)
	}
	got = defaults
	if err := got.SetQuery(url.Values{"host": {"h"}, "interval": {"0.2"}}); err != nil || got.Interval != 200*time.Millisecond {
		t.Errorf("interval=0.2: %v, %v; want 200ms", got.Interval, err)
	}
	for _, tc := range []struct{ key, value string }{
		{"count", "three"}, {"size", "1.5"}, {"interval", "1 s"}, {"timeout", "soon"},
		{"interval", "1e300"}, {"timeout", "-1e10"}, {"timeout", "Inf"},
	} {
		got := defaults
		err := got.SetQuery(url.Values{"host": {"h"}, tc.key: {tc.value}})
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+": ") {
			t.Errorf("%s=%s: %v, want an error naming %s", tc.key, tc.value, err, tc.key)
		}
	}
}

func TestCounterKey(t *testing.T) {
	for _, tc := range []struct {
		c    Counter
		want string
	}{
		{Counter{Name: "TcpRetransmits"}, "TcpRetransmits"},
		{Counter{Name: "NicRxPackets", Labels: map[string]string{"nic": "eth0"}}, "NicRxPackets{nic=eth0}"},
		{Counter{Name: "NicUnknown", Labels: map[string]string{"protocol": "7", "nic": "eth0"}}, "NicUnknown{nic=eth0,protocol=7}"},
	} {
		if got := tc.c.Key(); got != tc.want {
			t.Errorf("Key() = %q, want %q", got, tc.want)
		}
	}
}

func TestSocketStates(t *testing.T) {
	for _, tc := range []struct {
		s                    Socket
		listening, connected bool
	}{
		{Socket{Netid: "tcp", State: "LISTEN"}, true, false},
		{Socket{Netid: "tcp", State: "UNCONN"}, false, false},
		{Socket{Netid: "udp", State: "UNCONN"}, true, false},
		{Socket{Netid: "tcp", State: "ESTAB"}, false, true},
		{Socket{Netid: "udp", State: "ESTAB"}, false, true},
	} {
		if tc.s.Listening() != tc.listening || tc.s.Connected() != tc.connected {
			t.Errorf("%s %s: listening %v connected %v", tc.s.Netid, tc.s.State, tc.s.Listening(), tc.s.Connected())
		}
	}
}

// FuzzPingQuery: any query either is refused with an error naming the
// parameter, or gives a request whose Path reads back as the same request.
func FuzzPingQuery(f *testing.F) {
	for _, q := range []string{
		"host=10.0.2.2&count=3&interval=0.2&timeout=1s&size=56",
		"host=fd00::2&interval=200ms",
		"host=h&count=three", "host=h&size=1.5", "host=h&interval=1 s", "host=h&timeout=soon",
		"host=h&interval=1e300", "host=h&interval=-1e300", "host=h&timeout=NaN", "host=h&timeout=Inf",
		"host=h&count=99999999999999999999", "host=%zz", "count=1", "",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		var r PingRequest
		if err := r.SetQuery(q); err != nil {
			key, _, _ := strings.Cut(err.Error(), ":")
			if !strings.Contains("count interval timeout size", key) || key == "" {
				t.Fatalf("%q: error %q names no parameter", raw, err)
			}
			return
		}
		u, err := url.Parse(r.Path())
		if err != nil {
			t.Fatalf("%q: Path() %q does not parse: %v", raw, r.Path(), err)
		}
		var back PingRequest
		if err := back.SetQuery(u.Query()); err != nil || back != r {
			t.Fatalf("%q: %+v went out as %q and came back as %+v (%v)", raw, r, r.Path(), back, err)
		}
	})
}
