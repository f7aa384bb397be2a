package observe_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/observe"
)

func ruleEvent(src, dst string, proto string) observe.RuleEvent {
	ap := func(s string) netip.AddrPort {
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.AddrPortFrom(a, 0)
		}
		return netip.MustParseAddrPort(s)
	}
	return observe.RuleEvent{Time: time.Now(), Table: "filter", Chain: "INPUT", Rule: "-A INPUT -p udp --dport 9 -j DROP", Index: 1,
		Verdict: "DROP", Proto: proto, Src: ap(src), Dst: ap(dst), Len: 28}
}

// A subscription gets the verdicts on packets whose source or destination
// its filter matches; a full queue drops and counts; with no subscriber
// the feed is inactive.
func TestRuleFeedFilter(t *testing.T) {
	feed := observe.NewRuleFeed()
	var nilFeed *observe.RuleFeed
	if feed.Active() || nilFeed.Active() || nilFeed.Subscribers() != 0 {
		t.Fatal("a feed without subscribers is active")
	}
	feed.Publish(ruleEvent("10.1.0.9:5000", "10.2.0.2:9", "udp")) // to no one
	events := []observe.RuleEvent{
		ruleEvent("10.1.0.9:5000", "10.2.0.2:9", "udp"),
		ruleEvent("10.3.0.1:40000", "10.1.0.9:22", "tcp"),
		ruleEvent("10.3.0.1", "10.3.0.2", "icmp"),
		ruleEvent("10.3.0.1:9", "10.3.0.2:53", "udp"),
	}
	for _, c := range []struct {
		filter string
		want   []int // indexes into events
	}{
		{"", []int{0, 1, 2, 3}},
		{"10.1.0.9", []int{0, 1}},
		{"10.1.0.9:22", []int{1}},
		{":9", []int{0, 3}},
		{"10.3.0.2", []int{2, 3}},
	} {
		t.Run(c.filter, func(t *testing.T) {
			f, err := observe.ParseFilter(c.filter)
			if err != nil {
				t.Fatal(err)
			}
			sub := feed.Subscribe(f, len(events))
			if !feed.Active() || feed.Subscribers() != 1 {
				t.Fatalf("active %v with %d subscribers, want one", feed.Active(), feed.Subscribers())
			}
			for _, ev := range events {
				feed.Publish(ev)
			}
			sub.Close()
			if feed.Active() {
				t.Error("the feed is active after its only subscription closed")
			}
			var got []observe.RuleEvent
			for len(sub.C()) > 0 {
				got = append(got, <-sub.C())
			}
			if len(got) != len(c.want) {
				t.Fatalf("%d events, want %d", len(got), len(c.want))
			}
			for i, j := range c.want {
				if got[i].Src != events[j].Src || got[i].Dst != events[j].Dst {
					t.Errorf("event %d: %v > %v, want %v > %v", i, got[i].Src, got[i].Dst, events[j].Src, events[j].Dst)
				}
			}
		})
	}
	sub := feed.Subscribe(observe.Filter{}, 1)
	defer sub.Close()
	for range 3 {
		feed.Publish(events[0])
	}
	if len(sub.C()) != 1 || sub.Dropped() != 2 {
		t.Errorf("queue of one after three events: %d queued, %d dropped; want 1 and 2", len(sub.C()), sub.Dropped())
	}
}

// syncBuffer is a bytes.Buffer written by WriteTrace and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A trace with a rule feed writes a rule record per verdict its filter
// selects, and counts them in the end record.
func TestTraceRuleRecords(t *testing.T) {
	feed := observe.NewRuleFeed()
	f, _ := observe.ParseFilter("10.1.0.9")
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	type result struct {
		end api.EndRecord
		err error
	}
	done := make(chan result, 1)
	go func() {
		end, err := observe.WriteTrace(ctx, &out, nil, observe.TraceConfig{Stack: "r", Filter: f, Rules: feed})
		done <- result{end, err}
	}()
	testwait.For(t, "the trace to subscribe to the rule feed", func() bool { return feed.Subscribers() == 1 })
	feed.Publish(ruleEvent("10.1.0.9:5000", "10.2.0.2:9", "udp"))
	feed.Publish(ruleEvent("10.3.0.1", "10.3.0.2", "icmp")) // not selected
	feed.Publish(ruleEvent("10.2.0.2", "10.1.0.9", "icmp"))
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.end.Rules != 2 || r.end.Dropped != 0 {
		t.Errorf("end record %+v, want 2 rule records and none dropped", r.end)
	}
	var rules []api.RuleRecord
	sc := bufio.NewScanner(bytes.NewReader([]byte(out.String())))
	for sc.Scan() {
		var k struct{ Kind string }
		if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		if k.Kind == "rule" {
			var rr api.RuleRecord
			json.Unmarshal(sc.Bytes(), &rr)
			rules = append(rules, rr)
		}
	}
	want := []api.RuleRecord{
		{Kind: "rule", Table: "filter", Chain: "INPUT", Rule: "-A INPUT -p udp --dport 9 -j DROP", Index: 1, Verdict: "DROP", Proto: "udp", Src: "10.1.0.9:5000", Dst: "10.2.0.2:9", Len: 28},
		{Kind: "rule", Table: "filter", Chain: "INPUT", Rule: "-A INPUT -p udp --dport 9 -j DROP", Index: 1, Verdict: "DROP", Proto: "icmp", Src: "10.2.0.2", Dst: "10.1.0.9", Len: 28},
	}
	if len(rules) != len(want) {
		t.Fatalf("rule records %+v, want %+v", rules, want)
	}
	for i := range want {
		rules[i].T = 0
		if rules[i] != want[i] {
			t.Errorf("rule record %d: %+v, want %+v", i, rules[i], want[i])
		}
	}
}
