package shape

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Parse reads a spec in the text form, e.g. "rate 10mbit delay 20ms 5ms
// distribution normal loss 1% seed 7" (see the package documentation for
// the grammar). The empty string is the zero Spec. An error is one line
// that names the keyword and says how to fix it.
func Parse(s string) (Spec, error) {
	return ParseArgs(strings.Fields(s))
}

// ParseArgs is Parse for text already split into words, such as the
// arguments of a command line.
func ParseArgs(args []string) (Spec, error) {
	p := parser{args: args, seen: map[string]bool{}}
	var s Spec
	for !p.done() {
		kw := p.next()
		if p.seen[kw] {
			return Spec{}, fmt.Errorf("%s: given twice", kw)
		}
		p.seen[kw] = true
		var err error
		switch kw {
		case "rate":
			err = p.rate(&s)
		case "overhead":
			s.Overhead, err = p.int(kw, true)
		case "cellsize":
			s.CellSize, err = p.int(kw, false)
		case "celloverhead":
			s.CellOverhead, err = p.int(kw, true)
		case "limit":
			s.Limit, err = p.int(kw, false)
			if err == nil && s.Limit == 0 {
				err = fmt.Errorf("limit: 0 packets would drop everything (use 1 or more)")
			}
		case "bytes":
			s.LimitBytes, err = p.size(kw)
			if err == nil && s.LimitBytes == 0 {
				err = fmt.Errorf("bytes: 0 would drop everything (use e.g. bytes 150kb)")
			}
		case "queue":
			err = p.queue(&s)
		case "delay":
			err = p.delay(&s)
		case "distribution":
			err = p.distribution(&s)
		case "jitter-reorder":
			s.JitterReorder = true
		case "loss":
			err = p.loss(&s)
		case "duplicate":
			s.Duplicate, err = p.percent(kw)
		case "corrupt":
			s.Corrupt, err = p.percent(kw)
		case "reorder":
			s.Reorder, err = p.percent(kw)
		case "gap":
			s.Gap, err = p.int(kw, false)
			if err == nil && s.Gap == 0 {
				err = fmt.Errorf("gap: 0 would never reorder (use 1 or more, or leave reorder out)")
			}
		case "seed":
			var v string
			if v, err = p.value(kw, "a number, e.g. seed 7"); err == nil {
				s.Seed, err = strconv.ParseUint(v, 10, 64)
				if err != nil {
					err = fmt.Errorf("seed: %q is not a whole number from 0 to %d", v, uint64(math.MaxUint64))
				}
				s.HasSeed = true
			}
		default:
			return Spec{}, fmt.Errorf("%q: unknown keyword (known: %s)", kw, strings.Join(keywords, ", "))
		}
		if err != nil {
			return Spec{}, err
		}
		// Values that could continue the keyword are not allowed to
		// stray: "loss 1% 25%" is netem's correlation, not supported.
		if !p.done() && isValue(p.peek()) {
			return Spec{}, p.stray(kw, &s)
		}
	}
	if s.Reorder > 0 && s.Gap == 0 {
		s.Gap = 1 // netem: reorder without gap reorders any packet
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// keywords are the words that start a setting of a spec.
var keywords = []string{"rate", "overhead", "cellsize", "celloverhead", "limit", "bytes", "queue", "delay", "distribution", "jitter-reorder", "loss", "duplicate", "corrupt", "reorder", "gap", "seed"}

// IsKeyword reports whether w starts a setting in the text form ("rate",
// "delay"...), so that a command line can tell a spec from the words
// before it.
func IsKeyword(w string) bool { return slices.Contains(keywords, w) }

type parser struct {
	args []string
	i    int
	seen map[string]bool
}

func (p *parser) done() bool   { return p.i >= len(p.args) }
func (p *parser) peek() string { return p.args[p.i] }
func (p *parser) next() string { p.i++; return p.args[p.i-1] }

// nextValue returns the next word if it is a value rather than a keyword.
func (p *parser) nextValue() (string, bool) {
	if p.done() || !isValue(p.peek()) {
		return "", false
	}
	return p.next(), true
}

// value returns the value a keyword requires, or an error naming it.
func (p *parser) value(kw, want string) (string, error) {
	if v, ok := p.nextValue(); ok {
		return v, nil
	}
	if p.done() {
		return "", fmt.Errorf("%s: missing value (want %s)", kw, want)
	}
	return "", fmt.Errorf("%s: %q is not a value (want %s)", kw, p.peek(), want)
}

// stray explains a value nothing asked for, right after kw.
func (p *parser) stray(kw string, s *Spec) error {
	v := p.peek()
	switch kw {
	case "loss", "duplicate", "corrupt", "reorder":
		if strings.HasSuffix(v, "%") && (kw != "loss" || s.Loss.Model == LossRandom) {
			return fmt.Errorf("%s: correlation (%s) is not supported (for bursty loss use loss gemodel or loss state)", kw, v)
		}
	case "delay":
		if strings.HasSuffix(v, "%") {
			return fmt.Errorf("delay: correlation (%s) is not supported (use distribution normal, pareto or paretonormal to shape the jitter)", v)
		}
	}
	return fmt.Errorf("%s: unexpected value %q", kw, v)
}

// isValue tells values (numbers with units) from keywords.
func isValue(w string) bool {
	if w == "" {
		return false
	}
	c := w[0]
	return c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+'
}

func (p *parser) int(kw string, signed bool) (int, error) {
	want := "a whole number"
	if !signed {
		want = "a whole number, 0 or more"
	}
	v, err := p.value(kw, want)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || (!signed && n < 0) || n > 1<<30 || n < -1<<30 {
		return 0, fmt.Errorf("%s: %q is not %s", kw, v, want)
	}
	return n, nil
}

func (p *parser) percent(kw string) (float64, error) {
	v, err := p.value(kw, "a percentage, e.g. 1%")
	if err != nil {
		return 0, err
	}
	return parsePercent(kw, v)
}

func (p *parser) size(kw string) (int, error) {
	v, err := p.value(kw, "a size, e.g. 150kb")
	if err != nil {
		return 0, err
	}
	return parseSize(kw, v)
}

func (p *parser) duration(kw string) (time.Duration, error) {
	v, err := p.value(kw, "a time, e.g. 20ms")
	if err != nil {
		return 0, err
	}
	return parseDuration(kw, v)
}

// rate reads `rate R`, optionally followed by netem's positional
// PACKETOVERHEAD [CELLSIZE [CELLOVERHEAD]].
func (p *parser) rate(s *Spec) error {
	v, err := p.value("rate", "a rate, e.g. 10mbit")
	if err != nil {
		return err
	}
	if s.Rate, err = parseRate(v); err != nil {
		return err
	}
	for _, f := range []struct {
		kw     string
		dst    *int
		signed bool
	}{{"overhead", &s.Overhead, true}, {"cellsize", &s.CellSize, false}, {"celloverhead", &s.CellOverhead, true}} {
		if p.done() || !isValue(p.peek()) {
			break
		}
		if p.seen[f.kw] {
			return fmt.Errorf("%s: given twice", f.kw)
		}
		p.seen[f.kw] = true
		if *f.dst, err = p.int(f.kw, f.signed); err != nil {
			return err
		}
	}
	return nil
}

// queue reads `queue red MIN MAX P` or `queue codel [target T] [interval I]`.
func (p *parser) queue(s *Spec) error {
	if p.done() {
		return fmt.Errorf("queue: missing scheme (use queue red MIN MAX P or queue codel)")
	}
	switch kind := p.next(); kind {
	case "red":
		s.AQM.Kind = RED
		var units [2]bool
		for i, dst := range []*int{&s.AQM.RED.Min, &s.AQM.RED.Max} {
			v, err := p.value("queue red", "MIN MAX P, e.g. queue red 20 60 2% (packets) or queue red 30kb 90kb 2%")
			if err != nil {
				return err
			}
			if n, err := strconv.Atoi(v); err == nil {
				*dst = n
				continue
			}
			n, err := parseSize("queue red", v)
			if err != nil {
				return err
			}
			*dst, units[i] = n, true
		}
		if units[0] != units[1] {
			return fmt.Errorf("queue red: give both thresholds in packets (20 60) or both in bytes (30kb 90kb)")
		}
		s.AQM.RED.Bytes = units[0]
		v, err := p.value("queue red", "a drop probability after the thresholds, e.g. 2%")
		if err != nil {
			return err
		}
		s.AQM.RED.MaxP, err = parsePercent("queue red", v)
		return err
	case "codel":
		s.AQM.Kind = CoDel
		for !p.done() {
			var dst *time.Duration
			switch p.peek() {
			case "target":
				dst = &s.AQM.CoDelTarget
			case "interval":
				dst = &s.AQM.CoDelInterval
			default:
				return nil
			}
			kw := "queue codel " + p.next()
			if *dst != 0 {
				return fmt.Errorf("%s: given twice", kw)
			}
			d, err := p.duration(kw)
			if err != nil {
				return err
			}
			if d <= 0 {
				return fmt.Errorf("%s: must be more than 0", kw)
			}
			*dst = d
		}
		return nil
	default:
		return fmt.Errorf("queue: unknown scheme %q (use red or codel; drop-tail is the default)", kind)
	}
}

// delay reads `delay T [JITTER]`.
func (p *parser) delay(s *Spec) error {
	var err error
	if s.Delay, err = p.duration("delay"); err != nil {
		return err
	}
	if v, ok := p.nextValue(); ok {
		if strings.HasSuffix(v, "%") {
			return fmt.Errorf("delay: correlation (%s) is not supported (use distribution normal, pareto or paretonormal to shape the jitter)", v)
		}
		if s.Jitter, err = parseDuration("delay", v); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) distribution(s *Spec) error {
	if p.done() {
		return fmt.Errorf("distribution: missing name (use uniform, normal, pareto or paretonormal)")
	}
	name := p.next()
	for d, n := range distNames {
		if n == name {
			s.Distribution = Distribution(d)
			return nil
		}
	}
	return fmt.Errorf("distribution: unknown %q (use uniform, normal, pareto or paretonormal)", name)
}

// loss reads `loss [random] P`, `loss gemodel p [r [1-h [1-k]]]` or
// `loss state p13 [p31 [p32 [p23 [p14]]]]`, with netem's defaults for what
// is left out.
func (p *parser) loss(s *Spec) error {
	if p.done() {
		return fmt.Errorf("loss: missing value (use e.g. loss 1%%, loss gemodel P R 1-H 1-K or loss state P13 P31 P32 P23 P14)")
	}
	// optional reads up to len(dst) further percentages.
	optional := func(kw string, dst ...*float64) error {
		for _, d := range dst {
			v, ok := p.nextValue()
			if !ok {
				return nil
			}
			var err error
			if *d, err = parsePercent(kw, v); err != nil {
				return err
			}
		}
		return nil
	}
	switch p.peek() {
	default:
		if p.peek() == "random" {
			p.next()
		}
		v, err := p.value("loss", "a percentage, e.g. loss 1%")
		if err != nil {
			return err
		}
		s.Loss.Model = LossRandom
		s.Loss.Random, err = parsePercent("loss", v)
		return err
	case "gemodel":
		p.next()
		kw := "loss gemodel"
		v, err := p.value(kw, "P [R [1-H [1-K]]], e.g. loss gemodel 1% 30%")
		if err != nil {
			return err
		}
		g := &s.Loss.GE
		if g.P, err = parsePercent(kw, v); err != nil {
			return err
		}
		g.R, g.LossBad, g.LossGood = 1-g.P, 1, 0
		s.Loss.Model = LossGilbertElliott
		return optional(kw, &g.R, &g.LossBad, &g.LossGood)
	case "state":
		p.next()
		kw := "loss state"
		v, err := p.value(kw, "P13 [P31 [P32 [P23 [P14]]]], e.g. loss state 1% 30%")
		if err != nil {
			return err
		}
		f := &s.Loss.State
		if f.P13, err = parsePercent(kw, v); err != nil {
			return err
		}
		f.P31, f.P32, f.P23, f.P14 = 1-f.P13, 0, 1, 0
		s.Loss.Model = LossFourState
		return optional(kw, &f.P31, &f.P32, &f.P23, &f.P14)
	}
}

// splitUnit splits "20ms" into 20 and "ms".
func splitUnit(v string) (float64, string, bool) {
	i := 0
	if i < len(v) && (v[i] == '-' || v[i] == '+') {
		i++
	}
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.') {
		i++
	}
	n, err := strconv.ParseFloat(v[:i], 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, "", false
	}
	return n, v[i:], true
}

var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "nsec": time.Nanosecond, "nsecs": time.Nanosecond,
	"us": time.Microsecond, "usec": time.Microsecond, "usecs": time.Microsecond,
	"ms": time.Millisecond, "msec": time.Millisecond, "msecs": time.Millisecond,
	"s": time.Second, "sec": time.Second, "secs": time.Second,
}

func parseDuration(kw, v string) (time.Duration, error) {
	n, unit, ok := splitUnit(v)
	if !ok {
		return 0, fmt.Errorf("%s: %q is not a time (use e.g. 20ms)", kw, v)
	}
	if unit == "" {
		return 0, fmt.Errorf("%s: %q has no unit (use e.g. %sms)", kw, v, v)
	}
	u, ok := durationUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("%s: unknown unit %q in %q (use s, ms, us or ns)", kw, unit, v)
	}
	d := n * float64(u)
	if d < 0 {
		return 0, fmt.Errorf("%s: %q is negative", kw, v)
	}
	if d > float64(time.Hour) {
		return 0, fmt.Errorf("%s: %q is more than an hour", kw, v)
	}
	return time.Duration(math.Round(d)), nil
}

// rateUnits are tc's: SI and IEC multiples of bit/s, and of bytes/s
// ("bps" is bytes per second, as in tc).
var rateUnits = map[string]float64{
	"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
	"kibit": 1 << 10, "mibit": 1 << 20, "gibit": 1 << 30, "tibit": 1 << 40,
	"bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
	"kibps": 8 << 10, "mibps": 8 << 20, "gibps": 8 << 30, "tibps": 8 << 40,
}

func parseRate(v string) (uint64, error) {
	n, unit, ok := splitUnit(v)
	if !ok {
		return 0, fmt.Errorf("rate: %q is not a rate (use e.g. 10mbit)", v)
	}
	if unit == "" {
		return 0, fmt.Errorf("rate: %q has no unit (use e.g. %smbit; bps is bytes per second)", v, v)
	}
	u, ok := rateUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("rate: unknown unit %q in %q (use bit, kbit, mbit, gbit, or bps, kbps, mbps for bytes per second)", unit, v)
	}
	r := math.Round(n * u)
	if r < 1 {
		return 0, fmt.Errorf("rate: %q is less than 1bit (leave rate out for an unlimited link)", v)
	}
	if r > 1e13 {
		return 0, fmt.Errorf("rate: %q is more than 10tbit", v)
	}
	return uint64(r), nil
}

// sizeUnits are tc's: multiples of 1024 bytes.
var sizeUnits = map[string]int{
	"b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
}

func parseSize(kw, v string) (int, error) {
	n, unit, ok := splitUnit(v)
	if !ok {
		return 0, fmt.Errorf("%s: %q is not a size (use e.g. 150kb)", kw, v)
	}
	u := 1
	if unit != "" {
		if u, ok = sizeUnits[strings.ToLower(unit)]; !ok {
			return 0, fmt.Errorf("%s: unknown unit %q in %q (use b, kb or mb; kb is 1024 bytes)", kw, unit, v)
		}
	}
	b := n * float64(u)
	if b < 0 || b > 1<<40 || b != math.Trunc(b) {
		return 0, fmt.Errorf("%s: %q is not a whole number of bytes up to 1024gb", kw, v)
	}
	return int(b), nil
}

func parsePercent(kw, v string) (float64, error) {
	if !strings.HasSuffix(v, "%") {
		return 0, fmt.Errorf("%s: %q needs a %% sign (use e.g. %s%%)", kw, v, v)
	}
	n, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || !(n >= 0 && n <= 100) {
		return 0, fmt.Errorf("%s: %q is not a percentage from 0%% to 100%%", kw, v)
	}
	return n / 100, nil
}

// formatPercent writes p with the fewest digits that read back as p.
func formatPercent(p float64) string {
	for dec := 0; dec < 20; dec++ {
		s := strconv.FormatFloat(p*100, 'f', dec, 64)
		if v, err := strconv.ParseFloat(s, 64); err == nil && v/100 == p {
			return s + "%"
		}
	}
	return strconv.FormatFloat(p*100, 'f', -1, 64) + "%"
}

func formatRate(r uint64) string {
	for _, u := range []struct {
		name string
		n    uint64
	}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if r%u.n == 0 {
			return strconv.FormatUint(r/u.n, 10) + u.name
		}
	}
	return strconv.FormatUint(r, 10) + "bit"
}

func formatDuration(d time.Duration) string {
	for _, u := range []struct {
		name string
		n    time.Duration
	}{{"s", time.Second}, {"ms", time.Millisecond}, {"us", time.Microsecond}} {
		if d%u.n == 0 {
			return strconv.FormatInt(int64(d/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

func formatSize(b int) string {
	switch {
	case b != 0 && b%(1<<20) == 0:
		return strconv.Itoa(b>>20) + "mb"
	case b != 0 && b%(1<<10) == 0:
		return strconv.Itoa(b>>10) + "kb"
	}
	return strconv.Itoa(b) + "b"
}
