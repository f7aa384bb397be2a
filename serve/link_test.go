package serve_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/serve"
)

// TestLink: GET /v1/link shows the NIC's specs and counters, POST changes
// them in one or both directions, and bad requests are refused with a
// line that names what is wrong.
func TestLink(t *testing.T) {
	f := newFixture(t, "shaped", serve.Config{})
	ctx := ctxFor(t, 30*time.Second)
	var got api.LinkReply
	if err := f.client.Get(ctx, api.LinkPath, &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "shaped" || len(got.Links) != 1 || got.Links[0].Dev != "eth0" || got.Links[0].Egress.Spec != "" || got.Links[0].Ingress.Spec != "" {
		t.Errorf("GET %s: %+v", api.LinkPath, got)
	}

	set := func(req api.LinkRequest) api.Link {
		t.Helper()
		var reply api.LinkReply
		if err := f.client.PostJSON(ctx, api.LinkPath, req, &reply); err != nil {
			t.Fatalf("POST %+v: %v", req, err)
		}
		if len(reply.Links) != 1 {
			t.Fatalf("POST %+v: %+v", req, reply)
		}
		return reply.Links[0]
	}
	if l := set(api.LinkRequest{Spec: "delay 20ms loss 1% seed 4"}); l.Egress.Spec != "delay 20ms loss 1% seed 4" || l.Ingress.Spec != l.Egress.Spec || l.Egress.Seed != 4 {
		t.Errorf("both ways: %+v", l)
	}
	if l := set(api.LinkRequest{Dev: "eth0", Direction: "egress", Spec: "rate 1mbit"}); l.Egress.Spec != "rate 1mbit" || l.Ingress.Spec != "delay 20ms loss 1% seed 4" {
		t.Errorf("egress only: %+v", l)
	}

	// Traffic moves the counters.
	checksumServer(t, f.peer, ":7000")
	conn, err := f.client.Connect(ctx, "tcp", "10.0.9.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	var after api.LinkReply
	if err := f.client.Get(ctx, api.LinkPath+"?dev=eth0", &after); err != nil {
		t.Fatal(err)
	}
	if l := after.Links[0]; l.Egress.SentPackets == 0 || l.Ingress.SentPackets == 0 || l.Egress.SentBytes < 54 {
		t.Errorf("after a connection: %+v", l)
	}
	if l := set(api.LinkRequest{Direction: "both"}); l.Egress.Spec != "" || l.Ingress.Spec != "" {
		t.Errorf("cleared: %+v", l)
	}

	for _, tc := range []struct {
		req  api.LinkRequest
		code int
		want string
	}{
		{api.LinkRequest{Spec: "rate 10mbps delay"}, 400, "delay: missing value"},
		{api.LinkRequest{Spec: "bandwidth 1mbit"}, 400, `"bandwidth": unknown keyword`},
		{api.LinkRequest{Spec: "limit 10"}, 400, "rate"},
		{api.LinkRequest{Direction: "up", Spec: "delay 1ms"}, 400, `direction: "up" is not egress, ingress or both`},
		{api.LinkRequest{Dev: "eth1", Spec: "delay 1ms"}, 404, `dev: no NIC "eth1" with a link on this stack (NICs: eth0)`},
	} {
		var reply api.LinkReply
		err := f.client.PostJSON(ctx, api.LinkPath, tc.req, &reply)
		var se *control.StatusError
		if !errors.As(err, &se) || se.Code != tc.code || !strings.Contains(se.Message, tc.want) || strings.Contains(se.Message, "\n") {
			t.Errorf("POST %+v: %v, want %d %q", tc.req, err, tc.code, tc.want)
		}
	}
	var reply api.LinkReply
	var se *control.StatusError
	if err := f.client.Get(ctx, api.LinkPath+"?dev=wlan0", &reply); !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Errorf("GET an unknown dev: %v", err)
	}
}
