package shape

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultLimit is the queue limit in packets when a spec sets a rate but no
// limit: netem's default, here applied to the queue in front of the rate only.
const DefaultLimit = 1000

// CoDel's defaults (RFC 8289).
const (
	DefaultCoDelTarget   = 5 * time.Millisecond
	DefaultCoDelInterval = 100 * time.Millisecond
)

// Spec is what one direction of a link does to the packets crossing it.
// The zero Spec changes nothing. Parse reads the text form, String writes
// it; the package documentation describes both and the order in which the
// impairments apply.
type Spec struct {
	// Rate is the link's rate in bit/s; 0 is unlimited: no serialisation
	// time and no queue.
	Rate uint64
	// Overhead is added to each packet's length (it may be negative) when
	// its serialisation time is computed, e.g. 24 for Ethernet's preamble,
	// frame check sequence and inter-frame gap.
	Overhead int
	// CellSize, if not 0, rounds the length (after Overhead) up to whole
	// cells of CellSize bytes, each occupying CellSize+CellOverhead bytes
	// on the wire (ATM-like links).
	CellSize     int
	CellOverhead int

	// Limit is how many packets the queue in front of the rate holds
	// before it drops what arrives (drop-tail); 0 means DefaultLimit.
	// LimitBytes, if not 0, also bounds the bytes in it.
	Limit      int
	LimitBytes int
	// AQM drops from that queue before it is full.
	AQM AQM

	// Delay is the one-way propagation delay, Jitter the spread of its
	// random variation, drawn from Distribution.
	Delay        time.Duration
	Jitter       time.Duration
	Distribution Distribution
	// JitterReorder lets jitter reorder packets, as netem without a rate
	// does. By default a packet never leaves before the one sent ahead of
	// it: a later one that drew a shorter delay waits for it.
	JitterReorder bool

	Loss      Loss
	Duplicate float64 // probability, 0 to 1
	Corrupt   float64 // probability of one flipped bit
	// Reorder is the probability that a packet skips the delay (and goes
	// to the head of the queue), once at least Gap-1 packets have gone
	// through since the last one that did. Gap 0 means no reordering.
	Reorder float64
	Gap     int

	// Seed seeds the direction's random number generator when HasSeed is
	// set; otherwise a random seed is chosen (Stats reports it).
	Seed    uint64
	HasSeed bool
}

// Distribution is the shape of the delay's jitter.
type Distribution uint8

const (
	// Uniform spreads the delay evenly over [Delay-Jitter, Delay+Jitter),
	// what netem does without a distribution table.
	Uniform Distribution = iota
	// Normal, Pareto and ParetoNormal use netem's tables (see dist.go):
	// the delay is Delay + Jitter·x with x drawn from the table.
	Normal
	Pareto
	ParetoNormal
)

var distNames = [...]string{Uniform: "uniform", Normal: "normal", Pareto: "pareto", ParetoNormal: "paretonormal"}

func (d Distribution) String() string {
	if int(d) < len(distNames) {
		return distNames[d]
	}
	return "distribution(" + strconv.Itoa(int(d)) + ")"
}

// LossModel selects how Loss decides which packets are lost.
type LossModel uint8

const (
	LossNone LossModel = iota
	// LossRandom loses each packet independently with probability Random.
	LossRandom
	// LossGilbertElliott is the two-state Markov model.
	LossGilbertElliott
	// LossFourState is the four-state Markov model of netem's loss state.
	LossFourState
)

// Loss describes random packet loss.
type Loss struct {
	Model  LossModel
	Random float64
	GE     GilbertElliott
	State  FourState
}

// GilbertElliott is the two-state loss model: a good and a bad state, each
// losing packets with its own probability. netem's `loss gemodel p r 1-h
// 1-k`.
type GilbertElliott struct {
	P        float64 // good → bad, per packet
	R        float64 // bad → good, per packet
	LossBad  float64 // loss probability in the bad state (1-h)
	LossGood float64 // loss probability in the good state (1-k)
}

// FourState is netem's four-state model (`loss state p13 p31 p32 p23
// p14`): 1 = packets received in a gap, 2 = packets received within a
// burst, 3 = packets lost within a burst, 4 = an isolated loss. A packet is
// lost when the chain moves to state 3 or 4.
type FourState struct {
	P13, P31, P32, P23, P14 float64
}

// AQMKind selects the queue's drop policy.
type AQMKind uint8

const (
	DropTail AQMKind = iota
	RED
	CoDel
)

// AQM is an active queue management scheme for the queue in front of the
// rate. Drop-tail (the zero value) drops only what finds the queue full.
type AQM struct {
	Kind AQMKind
	RED  REDParams
	// CoDel's parameters; 0 means the defaults.
	CoDelTarget, CoDelInterval time.Duration
}

// REDParams are Random Early Detection's thresholds on the average queue
// (Floyd and Jacobson, 1993), in packets, or in bytes if Bytes is set.
// Between Min and Max a packet is dropped with a probability rising to MaxP;
// above Max every packet is.
type REDParams struct {
	Min, Max int
	Bytes    bool
	MaxP     float64
}

// PassThrough reports whether s leaves packets alone (a seed alone changes
// nothing).
func (s Spec) PassThrough() bool {
	s.Seed, s.HasSeed = 0, false
	return s == Spec{}
}

// queueLimit is the effective packet limit of the queue.
func (s Spec) queueLimit() int {
	if s.Limit == 0 {
		return DefaultLimit
	}
	return s.Limit
}

func (a AQM) codelTarget() time.Duration {
	if a.CoDelTarget == 0 {
		return DefaultCoDelTarget
	}
	return a.CoDelTarget
}

func (a AQM) codelInterval() time.Duration {
	if a.CoDelInterval == 0 {
		return DefaultCoDelInterval
	}
	return a.CoDelInterval
}

// Validate reports the first thing wrong with s, as a one-line error
// that names the keyword of the text form.
func (s Spec) Validate() error {
	prob := func(kw string, p float64) error {
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("%s: %s is not between 0%% and 100%%", kw, formatPercent(p))
		}
		return nil
	}
	switch {
	case s.Overhead < -1<<20 || s.Overhead > 1<<20:
		return fmt.Errorf("overhead: %d bytes is out of range (use -1048576 to 1048576)", s.Overhead)
	case s.CellSize < 0 || s.CellSize > 1<<20:
		return fmt.Errorf("cellsize: %d is out of range (use 0 to 1048576)", s.CellSize)
	case s.CellOverhead < -1<<20 || s.CellOverhead > 1<<20:
		return fmt.Errorf("celloverhead: %d bytes is out of range (use -1048576 to 1048576)", s.CellOverhead)
	case s.CellOverhead != 0 && s.CellSize == 0:
		return errors.New("celloverhead: needs cellsize")
	case (s.Overhead != 0 || s.CellSize != 0) && s.Rate == 0:
		return errors.New("overhead: only counts towards a rate (add e.g. rate 10mbit)")
	case s.Limit < 0:
		return fmt.Errorf("limit: %d packets is negative", s.Limit)
	case s.LimitBytes < 0:
		return fmt.Errorf("bytes: %d is negative", s.LimitBytes)
	case (s.Limit != 0 || s.LimitBytes != 0) && s.Rate == 0:
		return errors.New("limit: bounds the queue in front of a rate, and there is none (add e.g. rate 10mbit)")
	case s.AQM.Kind != DropTail && s.Rate == 0:
		return errors.New("queue: manages the queue in front of a rate, and there is none (add e.g. rate 10mbit)")
	case s.Delay < 0:
		return fmt.Errorf("delay: %s is negative", s.Delay)
	case s.Jitter < 0:
		return fmt.Errorf("delay: jitter %s is negative", s.Jitter)
	case s.Delay > time.Hour || s.Jitter > time.Hour:
		return errors.New("delay: more than an hour")
	case s.Distribution > ParetoNormal:
		return fmt.Errorf("distribution: unknown %s", s.Distribution)
	case s.Distribution != Uniform && s.Jitter == 0:
		return errors.New("distribution: shapes the jitter, and there is none (use e.g. delay 20ms 5ms)")
	case s.JitterReorder && s.Jitter == 0:
		return errors.New("jitter-reorder: there is no jitter to reorder by (use e.g. delay 20ms 5ms)")
	case s.Gap < 0:
		return fmt.Errorf("gap: %d is negative", s.Gap)
	case s.Reorder > 0 && s.Gap == 0:
		return errors.New("reorder: needs gap 1 or more (Parse sets gap 1 when it is not given)")
	case s.Gap > 0 && s.Reorder == 0:
		return errors.New("gap: needs reorder (use e.g. reorder 25% gap 5)")
	case s.Gap > 0 && s.Delay == 0:
		return errors.New("reorder: sends packets ahead of delayed ones, and nothing is delayed (add e.g. delay 10ms)")
	}
	for _, p := range []struct {
		kw string
		p  float64
	}{{"duplicate", s.Duplicate}, {"corrupt", s.Corrupt}, {"reorder", s.Reorder}} {
		if err := prob(p.kw, p.p); err != nil {
			return err
		}
	}
	switch s.Loss.Model {
	case LossNone:
		if s.Loss != (Loss{}) {
			return errors.New("loss: parameters without a model")
		}
	case LossRandom:
		if err := prob("loss", s.Loss.Random); err != nil {
			return err
		}
	case LossGilbertElliott:
		g := s.Loss.GE
		for _, p := range []float64{g.P, g.R, g.LossBad, g.LossGood} {
			if err := prob("loss gemodel", p); err != nil {
				return err
			}
		}
	case LossFourState:
		f := s.Loss.State
		for _, p := range []float64{f.P13, f.P31, f.P32, f.P23, f.P14} {
			if err := prob("loss state", p); err != nil {
				return err
			}
		}
		if f.P13+f.P14 > 1 {
			return errors.New("loss state: p13 + p14 is more than 100%")
		}
		if f.P31+f.P32 > 1 {
			return errors.New("loss state: p31 + p32 is more than 100%")
		}
	default:
		return fmt.Errorf("loss: unknown model %d", s.Loss.Model)
	}
	switch s.AQM.Kind {
	case DropTail:
		if s.AQM != (AQM{}) {
			return errors.New("queue: parameters without a scheme")
		}
	case RED:
		r := s.AQM.RED
		if r.Min < 0 || r.Max <= r.Min {
			return fmt.Errorf("queue red: thresholds %d and %d need 0 <= MIN < MAX", r.Min, r.Max)
		}
		if !(r.MaxP > 0 && r.MaxP <= 1) {
			return fmt.Errorf("queue red: probability %s is not above 0%% and at most 100%%", formatPercent(r.MaxP))
		}
	case CoDel:
		if s.AQM.CoDelTarget < 0 || s.AQM.CoDelInterval < 0 {
			return errors.New("queue codel: target and interval must be positive")
		}
	default:
		return fmt.Errorf("queue: unknown scheme %d", s.AQM.Kind)
	}
	return nil
}

// String renders s in the text form Parse reads; Parse(s.String())
// gives s back.
func (s Spec) String() string {
	var w []string
	add := func(f string, a ...any) { w = append(w, fmt.Sprintf(f, a...)) }
	if s.Rate != 0 {
		add("rate %s", formatRate(s.Rate))
		if s.Overhead != 0 {
			add("overhead %d", s.Overhead)
		}
		if s.CellSize != 0 {
			add("cellsize %d", s.CellSize)
			if s.CellOverhead != 0 {
				add("celloverhead %d", s.CellOverhead)
			}
		}
	}
	if s.Limit != 0 {
		add("limit %d", s.Limit)
	}
	if s.LimitBytes != 0 {
		add("bytes %s", formatSize(s.LimitBytes))
	}
	switch s.AQM.Kind {
	case RED:
		r := s.AQM.RED
		if r.Bytes {
			add("queue red %s %s %s", formatSize(r.Min), formatSize(r.Max), formatPercent(r.MaxP))
		} else {
			add("queue red %d %d %s", r.Min, r.Max, formatPercent(r.MaxP))
		}
	case CoDel:
		add("queue codel")
		if s.AQM.CoDelTarget != 0 {
			add("target %s", formatDuration(s.AQM.CoDelTarget))
		}
		if s.AQM.CoDelInterval != 0 {
			add("interval %s", formatDuration(s.AQM.CoDelInterval))
		}
	}
	if s.Delay != 0 || s.Jitter != 0 {
		if s.Jitter != 0 {
			add("delay %s %s", formatDuration(s.Delay), formatDuration(s.Jitter))
		} else {
			add("delay %s", formatDuration(s.Delay))
		}
	}
	if s.Distribution != Uniform {
		add("distribution %s", s.Distribution)
	}
	if s.JitterReorder {
		add("jitter-reorder")
	}
	switch l := s.Loss; l.Model {
	case LossRandom:
		add("loss %s", formatPercent(l.Random))
	case LossGilbertElliott:
		add("loss gemodel %s %s %s %s", formatPercent(l.GE.P), formatPercent(l.GE.R), formatPercent(l.GE.LossBad), formatPercent(l.GE.LossGood))
	case LossFourState:
		f := l.State
		add("loss state %s %s %s %s %s", formatPercent(f.P13), formatPercent(f.P31), formatPercent(f.P32), formatPercent(f.P23), formatPercent(f.P14))
	}
	if s.Duplicate != 0 {
		add("duplicate %s", formatPercent(s.Duplicate))
	}
	if s.Corrupt != 0 {
		add("corrupt %s", formatPercent(s.Corrupt))
	}
	if s.Reorder != 0 {
		add("reorder %s", formatPercent(s.Reorder))
		if s.Gap != 1 {
			add("gap %d", s.Gap)
		}
	} else if s.Gap != 0 {
		add("gap %d", s.Gap)
	}
	if s.HasSeed {
		add("seed %d", s.Seed)
	}
	return strings.Join(w, " ")
}
