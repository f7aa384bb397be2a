package serve_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/serve"
)

var replyLine = regexp.MustCompile(`(?m)^(\d+) bytes from (\S+): icmp_seq=(\d+) time=[\d.]+ ms$`)

func pair(t *testing.T) (*ustack.Stack, *ustack.Stack) {
	t.Helper()
	a, b, err := ustack.NewPair(ustack.Config{}, ustack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestPing: the engine's output is ping(8)'s, over IPv4 and IPv6.
func TestPing(t *testing.T) {
	a, _ := pair(t)
	for _, tc := range []struct {
		host, header string
		size         int
		replyBytes   string
	}{
		{"10.0.9.2", "PING peer (10.0.9.2) 56(84) bytes of data.\n", 56, "64"},
		{"fd09::2", "PING peer (fd09::2) 100(148) bytes of data.\n", 100, "108"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			var out bytes.Buffer
			o := serve.PingOptions{Count: 3, Interval: 10 * time.Millisecond, Timeout: 5 * time.Second, Size: tc.size}
			stats, err := serve.Ping(ctxFor(t, 30*time.Second), a, "peer", netip.MustParseAddr(tc.host), o, &out)
			if err != nil {
				t.Fatal(err)
			}
			if stats.Transmitted != 3 || stats.Received != 3 || stats.Duplicates != 0 || len(stats.RTTs) != 3 {
				t.Errorf("stats %+v", stats)
			}
			text := out.String()
			if !strings.HasPrefix(text, tc.header) {
				t.Errorf("first line of %q, want %q", text, tc.header)
			}
			replies := replyLine.FindAllStringSubmatch(text, -1)
			if len(replies) != 3 {
				t.Fatalf("%d reply lines in\n%s", len(replies), text)
			}
			// One line per sequence number, in the order the replies
			// came, as ping(8) prints them. That order may not be the
			// sending order: netstack sends the packets it held while
			// resolving the peer's link address from a goroutine of its
			// own, so the second echo can overtake the first (seen under
			// the race detector with both CPUs busy).
			seen := map[string]bool{}
			for _, r := range replies {
				if r[1] != tc.replyBytes || r[2] != tc.host || seen[r[3]] {
					t.Errorf("reply line %q", r[0])
				}
				seen[r[3]] = true
			}
			for _, seq := range []string{"1", "2", "3"} {
				if !seen[seq] {
					t.Errorf("no reply line for icmp_seq=%s in\n%s", seq, text)
				}
			}
			for _, want := range []string{"\n--- peer ping statistics ---\n", "3 packets transmitted, 3 received, 0% packet loss", "rtt min/avg/max/mdev = "} {
				if !strings.Contains(text, want) {
					t.Errorf("no %q in\n%s", want, text)
				}
			}
		})
	}
}

// TestPingNoReply: an address nobody answers for is all loss, after the
// timeout.
func TestPingNoReply(t *testing.T) {
	a, _ := pair(t)
	var out bytes.Buffer
	o := serve.PingOptions{Count: 2, Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond, Size: 56}
	stats, err := serve.Ping(ctxFor(t, 30*time.Second), a, "10.0.9.99", netip.MustParseAddr("10.0.9.99"), o, &out)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Transmitted != 2 || stats.Received != 0 || !strings.Contains(out.String(), "2 packets transmitted, 0 received, 100% packet loss") {
		t.Errorf("stats %+v, output\n%s", stats, out.String())
	}
}

// cancelAfter is a writer that ends a ping once it has printed n replies.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if len(replyLine.FindAllString(w.buf.String(), -1)) >= w.n {
		w.cancel()
	}
	return len(b), nil
}

// TestPingInterrupted: a ping without a count runs until its context
// ends, and still prints the summary.
func TestPingInterrupted(t *testing.T) {
	a, _ := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := &cancelAfter{n: 2, cancel: cancel}
	o := serve.DefaultPingOptions()
	o.Interval = 10 * time.Millisecond
	stats, err := serve.Ping(ctx, a, "10.0.9.2", netip.MustParseAddr("10.0.9.2"), o, w)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Received < 2 || !strings.Contains(w.buf.String(), "--- 10.0.9.2 ping statistics ---") {
		t.Errorf("stats %+v, output\n%s", stats, w.buf.String())
	}
}

func TestResolveHost(t *testing.T) {
	a, _ := pair(t)
	for in, want := range map[string]string{"10.0.9.2": "10.0.9.2", "::ffff:10.0.9.2": "10.0.9.2", "fd09::2": "fd09::2"} {
		got, err := serve.ResolveHost(context.Background(), a, in)
		if err != nil || got.String() != want {
			t.Errorf("ResolveHost(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

// TestPingEndpoint: GET /v1/ping streams the engine's lines through the
// client and reports the replies; bad parameters are a 400 naming them.
func TestPingEndpoint(t *testing.T) {
	f := newFixture(t, "pinger", serve.Config{Command: "daemon"})
	ctx := ctxFor(t, 30*time.Second)
	var out bytes.Buffer
	req := api.PingRequest{Host: "10.0.9.2", Count: 2, Interval: 10 * time.Millisecond, Timeout: 5 * time.Second, Size: 56}
	received, err := f.client.Ping(ctx, req, &out)
	if err != nil {
		t.Fatal(err)
	}
	if received != 2 || len(replyLine.FindAllString(out.String(), -1)) != 2 {
		t.Errorf("%d received; output\n%s", received, out.String())
	}

	for _, tc := range []struct {
		change func(*api.PingRequest)
		want   string
	}{
		{func(r *api.PingRequest) { r.Host = "" }, "ping: missing host"},
		{func(r *api.PingRequest) { r.Count = -1 }, "ping: count:"},
		{func(r *api.PingRequest) { r.Interval = 0 }, "ping: interval:"},
		{func(r *api.PingRequest) { r.Timeout = time.Microsecond }, "ping: timeout:"},
		{func(r *api.PingRequest) { r.Size = serve.MaxPingSize + 1 }, "ping: size:"},
	} {
		bad := req
		tc.change(&bad)
		out.Reset()
		_, err := f.client.Ping(ctx, bad, &out)
		var se *control.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusBadRequest || !strings.HasPrefix(se.Message, tc.want) || out.Len() != 0 {
			t.Errorf("%s: %v (output %q), want a 400 starting %q", bad.Path(), err, out.String(), tc.want)
		}
	}
}
