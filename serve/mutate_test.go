package serve_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/serve"
)

// TestMutate: POST /v1/mutate replaces the rules, GET shows them with
// counters that traffic moves, and bad rules are refused with one line
// naming the rule and the word.
func TestMutate(t *testing.T) {
	f := newFixture(t, "mutated", serve.Config{})
	ctx := ctxFor(t, 30*time.Second)
	var got api.MutateReply
	if err := f.client.Get(ctx, api.MutatePath, &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "mutated" || got.Dev != "eth0" || len(got.Rules) != 0 {
		t.Errorf("GET %s: %+v", api.MutatePath, got)
	}
	var set api.MutateReply
	if err := f.client.PostJSON(ctx, api.MutatePath, api.MutateRequest{Rules: []string{"tcp dport 7000 rewrite ttl=9", "udp drop"}}, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Rules) != 2 || set.Rules[0].Rule != "tcp dport 7000 rewrite ttl=9" || set.Rules[1].Rule != "udp drop" {
		t.Errorf("POST: %+v", set)
	}
	checksumServer(t, f.peer, ":7000")
	conn, err := f.client.Connect(ctx, "tcp", "10.0.9.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := f.client.Get(ctx, api.MutatePath, &got); err != nil {
		t.Fatal(err)
	}
	if r := got.Rules[0]; r.Matched == 0 || r.Acted != r.Matched {
		t.Errorf("after a connection to port 7000: %+v", r)
	}
	for _, tc := range []struct {
		rules []string
		want  string
	}{
		{[]string{"drop", "frob"}, `rule 2: unknown word "frob"`},
		{[]string{"in dupack=3"}, "rule 1: dupack applies to the ACKs the stack sends"},
	} {
		var reply api.MutateReply
		err := f.client.PostJSON(ctx, api.MutatePath, api.MutateRequest{Rules: tc.rules}, &reply)
		var se *control.StatusError
		if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(se.Message, tc.want) || strings.Contains(se.Message, "\n") {
			t.Errorf("POST %q: %v, want 400 %q", tc.rules, err, tc.want)
		}
	}
	if err := f.client.PostJSON(ctx, api.MutatePath, api.MutateRequest{}, &set); err != nil || len(set.Rules) != 0 {
		t.Errorf("POST no rules: %v %+v", err, set)
	}
}
