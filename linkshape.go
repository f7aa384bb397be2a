package ustack

import (
	"fmt"

	"github.com/ustack/ustack/shape"
)

// Link is what the emulated link of the stack's NIC does to frames: Egress
// to those the stack sends, Ingress to those it receives, each a spec in
// netem's vocabulary (package shape; shape.Parse reads "rate 10mbit delay
// 25ms loss 1%"). A symmetric link has the same spec both ways
// (SymmetricLink). The zero Link changes nothing.
//
// Every stack's NIC has the emulator, under the Ethernet framing where
// whole frames pass (a frame's length is its length on the wire, Ethernet
// header included), above the capture: --pcap and ustack capture record
// what leaves the emulator and what arrives before it, as tcpdump sees a
// Linux interface with a qdisc. With nothing set it costs a few
// nanoseconds per frame (BENCHMARKS.md), so every stack can be changed
// while it runs (Stack.SetLink, ustack link set).
type Link struct {
	Egress, Ingress shape.Spec
}

// SymmetricLink is spec in both directions.
func SymmetricLink(spec shape.Spec) Link { return Link{Egress: spec, Ingress: spec} }

// String is the link in the form ustack link show prints: "egress SPEC;
// ingress SPEC", "none" for an empty spec.
func (l Link) String() string {
	return fmt.Sprintf("egress %s; ingress %s", specText(l.Egress), specText(l.Ingress))
}

func specText(s shape.Spec) string {
	if t := s.String(); t != "" {
		return t
	}
	return "none"
}

func (l Link) validate() error {
	for _, d := range []shape.Direction{shape.Egress, shape.Ingress} {
		if err := l.spec(d).Validate(); err != nil {
			return &ConfigError{Field: "Link", Err: fmt.Errorf("%s: %w", d, err)}
		}
	}
	return nil
}

func (l Link) spec(d shape.Direction) shape.Spec {
	if d == shape.Ingress {
		return l.Ingress
	}
	return l.Egress
}

// Link returns the specs in force on the stack's NIC.
func (s *Stack) Link() Link {
	return Link{Egress: s.shaper.Spec(shape.Egress), Ingress: s.shaper.Spec(shape.Ingress)}
}

// SetLink puts spec in force in direction d for the frames that arrive from
// now on, like tc qdisc change: those already inside keep the delay and fate
// decided for them, those waiting for the link go at the new rate. An
// invalid spec is a *ConfigError for the field "Link".
func (s *Stack) SetLink(d shape.Direction, spec shape.Spec) error {
	if d != shape.Egress && d != shape.Ingress {
		return &ConfigError{Field: "Link", Err: fmt.Errorf("unknown direction %d (use shape.Egress or shape.Ingress)", int(d))}
	}
	if err := spec.Validate(); err != nil {
		return &ConfigError{Field: "Link", Err: fmt.Errorf("%s: %w", d, err)}
	}
	return s.shaper.Set(d, spec)
}

// LinkStats returns direction d's counters and spec, in the manner of
// tc -s qdisc: frames sent, dropped by loss, by the queue or its AQM,
// duplicated, corrupted, reordered, and what is queued and in flight now.
func (s *Stack) LinkStats(d shape.Direction) shape.Stats { return s.shaper.Stats(d) }

// LinkSojourn returns direction d's queueing delays so far: how long each
// packet waited for the emulated link's rate (nil for an unknown direction).
func (s *Stack) LinkSojourn(d shape.Direction) *shape.Sojourn { return s.shaper.Sojourn(d) }
