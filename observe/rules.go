package observe

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// RuleEvent is one packet a packet-filter rule took, or a chain's policy
// (the packet reached the chain's end).
type RuleEvent struct {
	Time         time.Time
	Table, Chain string // "filter", "INPUT"
	// Rule is the rule as written ("-A INPUT -p udp --dport 9 -j DROP"),
	// or the policy ("-P INPUT ACCEPT").
	Rule string
	// Index is the rule's position in its chain, from 1, as iptables -L
	// --line-numbers shows it; 0 for the policy.
	Index   int
	Verdict string         // the target: ACCEPT, DROP, REJECT, MASQUERADE
	Proto   string         // tcp, udp, icmp, icmpv6, or the protocol number
	Src     netip.AddrPort // port 0 for a protocol without ports
	Dst     netip.AddrPort
	Len     int // the IP packet's length
}

// RuleFeed fans a packet filter's verdicts out to subscribers (traces),
// as Hub does control-block samples. The filter asks Active before it
// builds an event: with no subscriber a verdict costs that one atomic
// load, and nothing is allocated. Each subscriber has a bounded queue; an
// event that finds it full is dropped and counted, the filter never waits.
type RuleFeed struct {
	active atomic.Int32
	subs   atomic.Pointer[[]*RuleSubscription]
	mu     sync.Mutex // serialises changes to subs
}

// NewRuleFeed returns a feed with no subscribers.
func NewRuleFeed() *RuleFeed { return &RuleFeed{} }

// Active reports whether anyone subscribes; a nil feed has no one.
func (f *RuleFeed) Active() bool { return f != nil && f.active.Load() != 0 }

// Publish hands ev to each subscriber whose filter matches its source or
// destination.
func (f *RuleFeed) Publish(ev RuleEvent) {
	subs := f.subs.Load()
	if subs == nil {
		return
	}
	for _, s := range *subs {
		if !s.filter.matchAddrPort(ev.Src) && !s.filter.matchAddrPort(ev.Dst) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			s.dropped.Add(1)
		}
	}
}

// RuleSubscription receives the verdicts on packets its filter matches.
type RuleSubscription struct {
	feed    *RuleFeed
	filter  Filter
	ch      chan RuleEvent
	dropped atomic.Uint64
	once    sync.Once
}

// C delivers the events. It is never closed; stop reading after Close.
func (s *RuleSubscription) C() <-chan RuleEvent { return s.ch }

// Dropped is how many events found the queue full.
func (s *RuleSubscription) Dropped() uint64 { return s.dropped.Load() }

// Subscribe starts delivering the verdicts on packets from or to filt
// into a queue of n.
func (f *RuleFeed) Subscribe(filt Filter, n int) *RuleSubscription {
	s := &RuleSubscription{feed: f, filter: filt, ch: make(chan RuleEvent, max(n, 1))}
	f.mu.Lock()
	defer f.mu.Unlock()
	var list []*RuleSubscription
	if old := f.subs.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, s)
	f.subs.Store(&list)
	f.active.Add(1)
	return s
}

// Close stops the subscription. Events already queued stay readable.
func (s *RuleSubscription) Close() {
	s.once.Do(func() {
		f := s.feed
		f.mu.Lock()
		defer f.mu.Unlock()
		var list []*RuleSubscription
		for _, x := range *f.subs.Load() {
			if x != s {
				list = append(list, x)
			}
		}
		f.subs.Store(&list)
		f.active.Add(-1)
	})
}

// Subscribers is the number of open subscriptions.
func (f *RuleFeed) Subscribers() int {
	if f == nil {
		return 0
	}
	if l := f.subs.Load(); l != nil {
		return len(*l)
	}
	return 0
}
