package mutate

import (
	"fmt"
	"strings"
)

// RuleStats are one rule's counters.
type RuleStats struct {
	Rule string // in the form Parse reads
	// Matched counts the frames the rule's match selected; Acted those it
	// acted on (after prob, and for the misbehaviours only ACKs of new
	// data); Injected the frames it added (copies, ACKs, resets).
	Matched, Acted, Injected uint64
}

// Stats are an Endpoint's counters, one entry per rule in order.
type Stats struct {
	Rules []RuleStats
	// Malformed counts frames that claimed to be IP but whose headers did
	// not hold together; they pass untouched, for the receiver to drop.
	Malformed uint64
}

// String formats s one rule a line:
//
//	1: ack-division=4
//	 matched 120 acted 60 injected 180
func (s Stats) String() string {
	var b strings.Builder
	if len(s.Rules) == 0 {
		b.WriteString("no rules\n")
	}
	for i, r := range s.Rules {
		fmt.Fprintf(&b, "%d: %s\n matched %d acted %d injected %d\n", i+1, r.Rule, r.Matched, r.Acted, r.Injected)
	}
	fmt.Fprintf(&b, "malformed %d", s.Malformed)
	return b.String()
}
