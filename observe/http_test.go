package observe_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/observe"
)

// waitGoroutines waits for the number of goroutines to fall to at most
// want, and lists them if it does not.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	err := testwait.Until(t.Context(), fmt.Sprintf("at most %d goroutines", want), func() error {
		if n := runtime.NumGoroutine(); n > want {
			return fmt.Errorf("%d goroutines", n)
		}
		return nil
	})
	if err != nil {
		buf := make([]byte, 1<<20)
		t.Errorf("%v:\n%s", err, buf[:runtime.Stack(buf, true)])
	}
}

// The trace endpoint streams records, is stopped by POST /v1/trace/stop
// with the end record, and leaves neither subscriptions nor goroutines.
func TestTraceEndpoint(t *testing.T) {
	a, b := lossyPair(t)
	srv := &observe.Server{Name: "a", Hub: a.TCPProbe(), Mirrors: map[string]*observe.Mirror{"eth0": a.FrameMirror()}}
	mux := http.NewServeMux()
	srv.Mount(mux)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	before := runtime.NumGoroutine()

	resp, err := client.Get(hs.URL + "/v1/trace?filter=:5010")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(api.TraceIDHeader) == "" {
		t.Fatalf("GET /v1/trace: %s, id %q", resp.Status, resp.Header.Get(api.TraceIDHeader))
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || !strings.Contains(first, `"kind":"start"`) || !strings.Contains(first, `"filter":":5010"`) {
		t.Fatalf("first line %q, %v", first, err)
	}
	if got := subscribers(t, hs.URL); got.NICs["eth0"] != 1 || got.TCPProbe != 1 {
		t.Errorf("GET /v1/subscribers during the trace: %+v, want one reader of eth0 and of the probe", got)
	}
	bulk(t, a, b, "5010", 1<<20)
	stop, err := client.Post(hs.URL+"/v1/trace/stop?id="+resp.Header.Get(api.TraceIDHeader), "", nil)
	if err != nil || stop.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /v1/trace/stop: %v %v", stop, err)
	}
	stop.Body.Close()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(rest), "\n"), "\n")
	var end api.EndRecord
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &end); err != nil || end.Kind != "end" {
		t.Fatalf("last line %q", lines[len(lines)-1])
	}
	if end.Samples == 0 || end.Packets == 0 || end.Samples+end.Packets != uint64(len(lines)-1) {
		t.Errorf("end %+v for %d records", end, len(lines)-1)
	}
	if n := a.TCPProbe().Subscribers() + a.FrameMirror().Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	waitGoroutines(t, before)

	// Stopping a trace that is not running is a 404.
	stop, err = client.Post(hs.URL+"/v1/trace/stop?id=99", "", nil)
	if err != nil || stop.StatusCode != http.StatusNotFound {
		t.Errorf("stopping trace 99: %v %v", stop, err)
	}
	// Bad parameters name themselves.
	for _, q := range []string{"filter=nonsense", "duration=-1s"} {
		r, err := client.Get(hs.URL + "/v1/trace?" + q)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(r.Body)
		r.Body.Close()
		key, _, _ := strings.Cut(q, "=")
		if r.StatusCode != http.StatusBadRequest || !strings.HasPrefix(string(msg), key+":") {
			t.Errorf("%s: %s %q", q, r.Status, msg)
		}
	}
}

// A trace with a duration ends by itself with its end record.
func TestTraceEndpointDuration(t *testing.T) {
	a, _ := lossyPair(t)
	srv := &observe.Server{Name: "a", Hub: a.TCPProbe(), Mirrors: map[string]*observe.Mirror{"eth0": a.FrameMirror()}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	start := time.Now()
	resp, err := http.Get(hs.URL + "/v1/trace?duration=300ms")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("a 300ms trace took %v", took)
	}
	if !strings.Contains(string(body), `"kind":"end"`) {
		t.Errorf("no end record in %q", body)
	}
}

// The capture endpoint streams a pcap that pcapgo reads, and the
// subscription ends when the reader goes away.
func TestCaptureEndpoint(t *testing.T) {
	a, b := lossyPair(t)
	srv := &observe.Server{Name: "a", Hub: a.TCPProbe(), Mirrors: map[string]*observe.Mirror{"eth0": a.FrameMirror()}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/v1/capture?nic=eth0&snaplen=128", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r, err := pcapgo.NewReader(resp.Body)
	if err != nil {
		t.Fatalf("pcap header: %v", err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Snaplen() != 128 {
		t.Errorf("link type %v, snaplen %d", r.LinkType(), r.Snaplen())
	}
	// The header comes once the capture is subscribed.
	if got := subscribers(t, hs.URL); got.NICs["eth0"] != 1 || got.TCPProbe != 0 {
		t.Errorf("GET /v1/subscribers during the capture: %+v, want eth0 1 and no probe reader", got)
	}
	type result struct {
		sawSYN bool
		err    error
	}
	read := make(chan result, 1)
	go func() {
		var res result
		for i := 0; i < 20 && res.err == nil; i++ {
			data, ci, err := r.ReadPacketData()
			switch {
			case err != nil:
				res.err = err
			case len(data) > 128 || ci.Length < len(data):
				res.err = fmt.Errorf("frame %d: %d bytes captured of %d", i, len(data), ci.Length)
			}
			if seg, ok := observe.ParseEthernetTCP(data); ok && seg.Flags == 0x02 && seg.Dst.Port() == 5011 {
				res.sawSYN = true
			}
		}
		read <- res
	}()
	bulk(t, a, b, "5011", 256<<10)
	res := <-read
	if res.err != nil {
		t.Fatal(res.err)
	}
	if !res.sawSYN {
		t.Error("the first 20 frames hold no SYN to port 5011")
	}
	cancel()
	testwait.ForNil(t, "the capture to unsubscribe", func() error {
		if n := subscribers(t, hs.URL).NICs["eth0"]; n != 0 {
			return fmt.Errorf("%d mirror subscriptions left after the reader went away", n)
		}
		return nil
	})
	for _, q := range []string{"nic=lo", "snaplen=10"} {
		r, err := http.Get(hs.URL + "/v1/capture?" + q)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(r.Body)
		r.Body.Close()
		key, _, _ := strings.Cut(q, "=")
		if r.StatusCode/100 != 4 || !strings.HasPrefix(string(msg), key+":") {
			t.Errorf("%s: %s %q", q, r.Status, msg)
		}
	}
}

// subscribers is the server's answer to GET /v1/subscribers, on a
// connection of its own that it closes (the tests count goroutines).
func subscribers(t *testing.T, url string) api.Subscribers {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url + "/v1/subscribers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s api.Subscribers
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/subscribers: %s, %v", resp.Status, err)
	}
	return s
}
