package shape

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		in   string
		want Spec
		out  string // String(); "" means the input itself
	}{
		{in: "", want: Spec{}},
		{in: "rate 10mbit", want: Spec{Rate: 10e6}},
		{in: "rate 1500kbit", want: Spec{Rate: 1.5e6}},
		{in: "rate 1.5mbit", want: Spec{Rate: 1.5e6}, out: "rate 1500kbit"},
		{in: "rate 2gbit", want: Spec{Rate: 2e9}},
		{in: "rate 1tbit", want: Spec{Rate: 1e12}},
		{in: "rate 300bit", want: Spec{Rate: 300}},
		{in: "rate 1Mbit", want: Spec{Rate: 1e6}, out: "rate 1mbit"},
		{in: "rate 1mibit", want: Spec{Rate: 1 << 20}, out: "rate 1048576bit"},
		{in: "rate 100kbps", want: Spec{Rate: 800e3}, out: "rate 800kbit"},
		{in: "rate 1bps", want: Spec{Rate: 8}, out: "rate 8bit"},
		{in: "rate 10mbit 24", want: Spec{Rate: 10e6, Overhead: 24}, out: "rate 10mbit overhead 24"},
		{in: "rate 10mbit -4 53 5", want: Spec{Rate: 10e6, Overhead: -4, CellSize: 53, CellOverhead: 5}, out: "rate 10mbit overhead -4 cellsize 53 celloverhead 5"},
		{in: "rate 10mbit overhead 24 cellsize 48", want: Spec{Rate: 10e6, Overhead: 24, CellSize: 48}},
		{in: "overhead 24 rate 10mbit", want: Spec{Rate: 10e6, Overhead: 24}, out: "rate 10mbit overhead 24"},
		{in: "rate 10mbit limit 100", want: Spec{Rate: 10e6, Limit: 100}},
		{in: "rate 10mbit bytes 150kb", want: Spec{Rate: 10e6, LimitBytes: 150 << 10}},
		{in: "rate 10mbit limit 100 bytes 1500", want: Spec{Rate: 10e6, Limit: 100, LimitBytes: 1500}, out: "rate 10mbit limit 100 bytes 1500b"},
		{in: "rate 10mbit bytes 2mb", want: Spec{Rate: 10e6, LimitBytes: 2 << 20}},
		{in: "rate 10mbit queue red 20 60 2%", want: Spec{Rate: 10e6, AQM: AQM{Kind: RED, RED: REDParams{Min: 20, Max: 60, MaxP: 0.02}}}},
		{in: "rate 10mbit queue red 30kb 90kb 10%", want: Spec{Rate: 10e6, AQM: AQM{Kind: RED, RED: REDParams{Min: 30 << 10, Max: 90 << 10, Bytes: true, MaxP: 0.1}}}},
		{in: "rate 10mbit queue codel", want: Spec{Rate: 10e6, AQM: AQM{Kind: CoDel}}},
		{in: "rate 10mbit queue codel target 2ms interval 50ms", want: Spec{Rate: 10e6, AQM: AQM{Kind: CoDel, CoDelTarget: 2 * ms, CoDelInterval: 50 * ms}}},
		{in: "queue codel interval 50ms rate 10mbit", want: Spec{Rate: 10e6, AQM: AQM{Kind: CoDel, CoDelInterval: 50 * ms}}, out: "rate 10mbit queue codel interval 50ms"},
		{in: "delay 20ms", want: Spec{Delay: 20 * ms}},
		{in: "delay 1.5ms", want: Spec{Delay: 1500 * time.Microsecond}, out: "delay 1500us"},
		{in: "delay 2s", want: Spec{Delay: 2 * time.Second}},
		{in: "delay 250us", want: Spec{Delay: 250 * time.Microsecond}},
		{in: "delay 100ns", want: Spec{Delay: 100}},
		{in: "delay 20msec", want: Spec{Delay: 20 * ms}, out: "delay 20ms"},
		{in: "delay 20ms 5ms", want: Spec{Delay: 20 * ms, Jitter: 5 * ms}},
		{in: "delay 0s 5ms", want: Spec{Jitter: 5 * ms}},
		{in: "delay 20ms 5ms distribution normal", want: Spec{Delay: 20 * ms, Jitter: 5 * ms, Distribution: Normal}},
		{in: "delay 20ms 5ms distribution pareto", want: Spec{Delay: 20 * ms, Jitter: 5 * ms, Distribution: Pareto}},
		{in: "delay 20ms 5ms distribution paretonormal", want: Spec{Delay: 20 * ms, Jitter: 5 * ms, Distribution: ParetoNormal}},
		{in: "delay 20ms 5ms distribution uniform", want: Spec{Delay: 20 * ms, Jitter: 5 * ms}, out: "delay 20ms 5ms"},
		{in: "delay 20ms 5ms jitter-reorder", want: Spec{Delay: 20 * ms, Jitter: 5 * ms, JitterReorder: true}},
		{in: "loss 1%", want: Spec{Loss: Loss{Model: LossRandom, Random: 0.01}}},
		{in: "loss random 0.5%", want: Spec{Loss: Loss{Model: LossRandom, Random: 0.005}}, out: "loss 0.5%"},
		{in: "loss 7%", want: Spec{Loss: Loss{Model: LossRandom, Random: 0.07}}},
		{in: "loss 0.001%", want: Spec{Loss: Loss{Model: LossRandom, Random: 0.00001}}},
		{in: "loss gemodel 1%", want: Spec{Loss: Loss{Model: LossGilbertElliott, GE: GilbertElliott{P: 0.01, R: 0.99, LossBad: 1}}}, out: "loss gemodel 1% 99% 100% 0%"},
		{in: "loss gemodel 1% 30%", want: Spec{Loss: Loss{Model: LossGilbertElliott, GE: GilbertElliott{P: 0.01, R: 0.3, LossBad: 1}}}, out: "loss gemodel 1% 30% 100% 0%"},
		{in: "loss gemodel 1% 30% 80% 0.1%", want: Spec{Loss: Loss{Model: LossGilbertElliott, GE: GilbertElliott{P: 0.01, R: 0.3, LossBad: 0.8, LossGood: 0.001}}}},
		{in: "loss state 1%", want: Spec{Loss: Loss{Model: LossFourState, State: FourState{P13: 0.01, P31: 0.99, P23: 1}}}, out: "loss state 1% 99% 0% 100% 0%"},
		{in: "loss state 1% 30% 10% 5% 0.5%", want: Spec{Loss: Loss{Model: LossFourState, State: FourState{P13: 0.01, P31: 0.3, P32: 0.1, P23: 0.05, P14: 0.005}}}},
		{in: "duplicate 0.1%", want: Spec{Duplicate: 0.001}},
		{in: "corrupt 0.01%", want: Spec{Corrupt: 0.0001}},
		{in: "delay 10ms reorder 25%", want: Spec{Delay: 10 * ms, Reorder: 0.25, Gap: 1}},
		{in: "delay 10ms reorder 25% gap 5", want: Spec{Delay: 10 * ms, Reorder: 0.25, Gap: 5}},
		{in: "gap 5 reorder 100% delay 10ms", want: Spec{Delay: 10 * ms, Reorder: 1, Gap: 5}, out: "delay 10ms reorder 100% gap 5"},
		{in: "seed 7", want: Spec{Seed: 7, HasSeed: true}},
		{in: "seed 0", want: Spec{HasSeed: true}},
		{in: "seed 18446744073709551615", want: Spec{Seed: 1<<64 - 1, HasSeed: true}},
		{
			in:   "rate 10mbit delay 20ms 5ms distribution normal loss 1% duplicate 0.1% corrupt 0.01% reorder 25% gap 5 limit 1000 seed 7",
			want: Spec{Rate: 10e6, Limit: 1000, Delay: 20 * ms, Jitter: 5 * ms, Distribution: Normal, Loss: Loss{Model: LossRandom, Random: 0.01}, Duplicate: 0.001, Corrupt: 0.0001, Reorder: 0.25, Gap: 5, Seed: 7, HasSeed: true},
			out:  "rate 10mbit limit 1000 delay 20ms 5ms distribution normal loss 1% duplicate 0.1% corrupt 0.01% reorder 25% gap 5 seed 7",
		},
		{in: "  rate   10mbit\tdelay 25ms\n", want: Spec{Rate: 10e6, Delay: 25 * ms}, out: "rate 10mbit delay 25ms"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Parse = %+v, want %+v", got, tc.want)
			}
			out := tc.out
			if out == "" {
				out = tc.in
			}
			if s := got.String(); s != out {
				t.Fatalf("String = %q, want %q", s, out)
			}
			back, err := Parse(got.String())
			if err != nil || back != got {
				t.Fatalf("Parse(String()) = %+v, %v; want %+v", back, err, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"delay 20", `delay: "20" has no unit (use e.g. 20ms)`},
		{"delay", `delay: missing value (want a time, e.g. 20ms)`},
		{"delay loss 1%", `delay: "loss" is not a value (want a time, e.g. 20ms)`},
		{"delay 20ms 20", `delay: "20" has no unit (use e.g. 20ms)`},
		{"delay 20parsecs", `delay: unknown unit "parsecs" in "20parsecs" (use s, ms, us or ns)`},
		{"delay -5ms", `delay: "-5ms" is negative`},
		{"delay 2h", `delay: unknown unit "h" in "2h" (use s, ms, us or ns)`},
		{"delay 3601s", `delay: "3601s" is more than an hour`},
		{"delay 100ms 10ms 25%", `delay: correlation (25%) is not supported (use distribution normal, pareto or paretonormal to shape the jitter)`},
		{"delay 10ms 1ms 2ms", `delay: unexpected value "2ms"`},
		{"delay x", `delay: "x" is not a value (want a time, e.g. 20ms)`},
		{"delay .ms", `delay: ".ms" is not a time (use e.g. 20ms)`},
		{"rate 10", `rate: "10" has no unit (use e.g. 10mbit; bps is bytes per second)`},
		{"rate 10mbits", `rate: unknown unit "mbits" in "10mbits" (use bit, kbit, mbit, gbit, or bps, kbps, mbps for bytes per second)`},
		{"rate 0mbit", `rate: "0mbit" is less than 1bit (leave rate out for an unlimited link)`},
		{"rate 20tbit", `rate: "20tbit" is more than 10tbit`},
		{"rate 10mbit 1 2 3 4", `rate: unexpected value "4"`},
		{"rate 10mbit overhead 1 2", `overhead: unexpected value "2"`},
		{"rate 10mbit 24 overhead 24", `overhead: given twice`},
		{"rate 10mbit cellsize -1", `cellsize: "-1" is not a whole number, 0 or more`},
		{"rate 10mbit celloverhead 5", `celloverhead: needs cellsize`},
		{"overhead 24", `overhead: only counts towards a rate (add e.g. rate 10mbit)`},
		{"limit 100", `limit: bounds the queue in front of a rate, and there is none (add e.g. rate 10mbit)`},
		{"rate 1mbit limit 0", `limit: 0 packets would drop everything (use 1 or more)`},
		{"rate 1mbit limit -3", `limit: "-3" is not a whole number, 0 or more`},
		{"rate 1mbit limit 10p", `limit: "10p" is not a whole number, 0 or more`},
		{"rate 1mbit bytes 10q", `bytes: unknown unit "q" in "10q" (use b, kb or mb; kb is 1024 bytes)`},
		{"rate 1mbit bytes 0", `bytes: 0 would drop everything (use e.g. bytes 150kb)`},
		{"rate 1mbit bytes 1.5b", `bytes: "1.5b" is not a whole number of bytes up to 1024gb`},
		{"queue codel", `queue: manages the queue in front of a rate, and there is none (add e.g. rate 10mbit)`},
		{"rate 1mbit queue", `queue: missing scheme (use queue red MIN MAX P or queue codel)`},
		{"rate 1mbit queue pie", `queue: unknown scheme "pie" (use red or codel; drop-tail is the default)`},
		{"rate 1mbit queue red 20", `queue red: missing value (want MIN MAX P, e.g. queue red 20 60 2% (packets) or queue red 30kb 90kb 2%)`},
		{"rate 1mbit queue red 20 30kb 2%", `queue red: give both thresholds in packets (20 60) or both in bytes (30kb 90kb)`},
		{"rate 1mbit queue red 60 20 2%", `queue red: thresholds 60 and 20 need 0 <= MIN < MAX`},
		{"rate 1mbit queue red 20 60 0%", `queue red: probability 0% is not above 0% and at most 100%`},
		{"rate 1mbit queue red 20 60", `queue red: missing value (want a drop probability after the thresholds, e.g. 2%)`},
		{"rate 1mbit queue codel target 0ms", `queue codel target: must be more than 0`},
		{"rate 1mbit queue codel target 5ms target 6ms", `queue codel target: given twice`},
		{"rate 1mbit queue codel target", `queue codel target: missing value (want a time, e.g. 20ms)`},
		{"distribution normal", `distribution: shapes the jitter, and there is none (use e.g. delay 20ms 5ms)`},
		{"delay 20ms 5ms distribution gauss", `distribution: unknown "gauss" (use uniform, normal, pareto or paretonormal)`},
		{"delay 20ms distribution", `distribution: missing name (use uniform, normal, pareto or paretonormal)`},
		{"delay 20ms jitter-reorder", `jitter-reorder: there is no jitter to reorder by (use e.g. delay 20ms 5ms)`},
		{"loss 1", `loss: "1" needs a % sign (use e.g. 1%)`},
		{"loss 101%", `loss: "101%" is not a percentage from 0% to 100%`},
		{"loss -1%", `loss: "-1%" is not a percentage from 0% to 100%`},
		{"loss", `loss: missing value (use e.g. loss 1%, loss gemodel P R 1-H 1-K or loss state P13 P31 P32 P23 P14)`},
		{"loss 1% 25%", `loss: correlation (25%) is not supported (for bursty loss use loss gemodel or loss state)`},
		{"loss random", `loss: missing value (want a percentage, e.g. loss 1%)`},
		{"loss gemodel", `loss gemodel: missing value (want P [R [1-H [1-K]]], e.g. loss gemodel 1% 30%)`},
		{"loss gemodel 1% 2% 3% 4% 5%", `loss: unexpected value "5%"`},
		{"loss state 1% 2% 3% 4% 5% 6%", `loss: unexpected value "6%"`},
		{"loss state 60% 0% 0% 100% 50%", `loss state: p13 + p14 is more than 100%`},
		{"loss state 1% 60% 50%", `loss state: p31 + p32 is more than 100%`},
		{"loss gemodel 1% x", `"x": unknown keyword (known: rate, overhead, cellsize, celloverhead, limit, bytes, queue, delay, distribution, jitter-reorder, loss, duplicate, corrupt, reorder, gap, seed)`},
		{"duplicate 1% 2%", `duplicate: correlation (2%) is not supported (for bursty loss use loss gemodel or loss state)`},
		{"corrupt", `corrupt: missing value (want a percentage, e.g. 1%)`},
		{"reorder 25%", `reorder: sends packets ahead of delayed ones, and nothing is delayed (add e.g. delay 10ms)`},
		{"delay 10ms gap 5", `gap: needs reorder (use e.g. reorder 25% gap 5)`},
		{"delay 10ms reorder 5% gap 0", `gap: 0 would never reorder (use 1 or more, or leave reorder out)`},
		{"seed x", `seed: "x" is not a value (want a number, e.g. seed 7)`},
		{"seed 1.5", `seed: "1.5" is not a whole number from 0 to 18446744073709551615`},
		{"seed -1", `seed: "-1" is not a whole number from 0 to 18446744073709551615`},
		{"loss 1% loss 2%", `loss: given twice`},
		{"rate 1mbit rate 2mbit", `rate: given twice`},
		{"bandwidth 10mbit", `"bandwidth": unknown keyword (known: rate, overhead, cellsize, celloverhead, limit, bytes, queue, delay, distribution, jitter-reorder, loss, duplicate, corrupt, reorder, gap, seed)`},
		{"10mbit", `"10mbit": unknown keyword (known: rate, overhead, cellsize, celloverhead, limit, bytes, queue, delay, distribution, jitter-reorder, loss, duplicate, corrupt, reorder, gap, seed)`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			s, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse = %+v, want error %q", s, tc.want)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n  %s\nwant\n  %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is more than one line: %q", err)
			}
		})
	}
}

// TestValidate covers specs built in Go rather than parsed.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Spec
		want string
	}{
		{"zero", Spec{}, ""},
		{"negative delay", Spec{Delay: -1}, "delay: -1ns is negative"},
		{"jitter", Spec{Jitter: -1}, "delay: jitter -1ns is negative"},
		{"probability", Spec{Duplicate: 1.5}, "duplicate: 150% is not between 0% and 100%"},
		{"NaN", Spec{Corrupt: nan()}, "corrupt: NaN% is not between 0% and 100%"},
		{"loss parameters without model", Spec{Loss: Loss{Random: 0.1}}, "loss: parameters without a model"},
		{"reorder without gap", Spec{Delay: 1, Reorder: 0.5}, "reorder: needs gap 1 or more (Parse sets gap 1 when it is not given)"},
		{"unknown model", Spec{Loss: Loss{Model: 9}}, "loss: unknown model 9"},
		{"GE probability", Spec{Loss: Loss{Model: LossGilbertElliott, GE: GilbertElliott{P: 2}}}, "loss gemodel: 200% is not between 0% and 100%"},
		{"queue params without scheme", Spec{Rate: 1, AQM: AQM{CoDelTarget: 1}}, "queue: parameters without a scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("Validate = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSpecPassThrough(t *testing.T) {
	if !(Spec{}).PassThrough() || !(Spec{Seed: 3, HasSeed: true}).PassThrough() {
		t.Fatal("zero spec or seed alone is not pass-through")
	}
	if (Spec{Delay: 1}).PassThrough() || (Spec{Loss: Loss{Model: LossRandom}}).PassThrough() {
		t.Fatal("a spec that changes something is pass-through")
	}
}

func nan() float64 { z := 0.0; return z / z }

func TestIsKeyword(t *testing.T) {
	for _, w := range keywords {
		if !IsKeyword(w) {
			t.Errorf("IsKeyword(%q) = false", w)
		}
		if _, err := ParseArgs([]string{w}); err != nil && strings.Contains(err.Error(), "unknown keyword") {
			t.Errorf("%q is listed as a keyword but the parser does not know it: %v", w, err)
		}
	}
	for _, w := range []string{"eth0", "in", "out", "10mbit", "", "Rate"} {
		if IsKeyword(w) {
			t.Errorf("IsKeyword(%q) = true", w)
		}
	}
}
