package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// The tables go between these markers in BENCHMARKS.md; a run replaces what
// is between them, or appends the section if they are missing.
const (
	markBegin = "<!-- bench:begin (written by scripts/bench.sh; edits here are overwritten) -->"
	markEnd   = "<!-- bench:end -->"
)

type summary struct {
	median, min, max float64
	n                int
}

func summarize(v []float64) (summary, bool) {
	if len(v) == 0 {
		return summary{}, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{median: med, min: s[0], max: s[len(s)-1], n: len(s)}, true
}

// number prints a figure with as many digits as it deserves.
func number(f float64) string {
	switch a := math.Abs(f); {
	case a >= 1000:
		return groupThousands(fmt.Sprintf("%.0f", f))
	case a >= 100:
		return fmt.Sprintf("%.0f", f)
	case a >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2f", f)
	}
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func cell(s summary, ok bool, failure string) string {
	if !ok {
		if failure != "" {
			return "failed¹"
		}
		return "—"
	}
	if s.n == 1 || s.min == s.max {
		return number(s.median)
	}
	return fmt.Sprintf("%s (%s–%s)", number(s.median), number(s.min), number(s.max))
}

// ratio is the variant's median over the reference's, written so that the
// reader can see at once whether it is better: "0.45×" for a rate, "3.9×"
// (slower) for a latency.
func ratio(r row, v, ref summary, okV, okRef bool) string {
	if !okV || !okRef || ref.median == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v.median/ref.median)
}

func renderSection(o options, res *results, now time.Time) string {
	var b strings.Builder
	b.WriteString(markBegin + "\n")
	fmt.Fprintf(&b, "Measured %s with `scripts/bench.sh", now.UTC().Format("2006-01-02 15:04 UTC"))
	if o.quick {
		b.WriteString(" --quick")
	}
	fmt.Fprintf(&b, "`: %d round(s) of %s per measurement, the variants taking turns within each round; "+
		"median (min–max) of the rounds.\n\n", o.rounds, o.duration)
	cols := o.variants
	b.WriteString("| what | unit |")
	for _, c := range cols {
		fmt.Fprintf(&b, " %s |", c)
	}
	b.WriteString(" ustack/kernel | ustack/pasta |\n|---|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("---|---|\n")
	var failures []string
	for _, rn := range o.rows {
		r := rowByName(rn)
		unit := r.unit
		if r.lower {
			unit += " (lower is better)"
		}
		fmt.Fprintf(&b, "| %s | %s |", r.title, unit)
		for _, c := range cols {
			s, ok := summarize(res.values[rn][c])
			failure := res.errs[rn][c]
			if !ok && failure != "" {
				failures = append(failures, fmt.Sprintf("%s, %s: %s", rn, c, failure))
			}
			fmt.Fprintf(&b, " %s |", cell(s, ok, failure))
		}
		u, okU := summarize(res.values[rn]["ustack"])
		k, okK := summarize(res.values[rn]["kernel"])
		p, okP := summarize(res.values[rn]["pasta"])
		fmt.Fprintf(&b, " %s | %s |\n", ratio(r, u, k, okU, okK), ratio(r, u, p, okU, okP))
	}
	if len(failures) > 0 {
		b.WriteString("\n¹ No figure in any round:\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
	}
	b.WriteString(markEnd + "\n")
	return b.String()
}

// writeSection puts section in place of the marked one in path, or appends
// it under a heading of its own.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	i, j := strings.Index(text, markBegin), strings.Index(text, markEnd)
	switch {
	case i >= 0 && j > i:
		text = text[:i] + section + text[j+len(markEnd)+1:]
	case i >= 0 || j >= 0:
		return fmt.Errorf("%s: only one of the bench markers is there; put both back or remove both", path)
	default:
		if text != "" && !strings.HasSuffix(text, "\n\n") {
			text += "\n"
		}
		text += "## Programs under `ustack run` beside the kernel, slirp4netns and pasta\n\n" + section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
