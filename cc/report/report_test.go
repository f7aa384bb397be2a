package report_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ustack/ustack/cc/dumbbell"
	"github.com/ustack/ustack/cc/report"
	"github.com/ustack/ustack/internal/testbin"
)

// TestQuick runs the quick comparison of two algorithms and checks the
// table's shape: a table per condition, a row per algorithm, every cell a
// number, goodput within the link's payload rate, Jain's index within
// [0.5, 1], shares within [0, 1]; and the plots it links exist.
func TestQuick(t *testing.T) {
	testbin.EndToEnd(t)
	o := report.Quick()
	o.Algorithms = []string{"reno", "vegas"}
	r, err := report.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plots, err := r.Plot(filepath.Join(dir, "cc-report"))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(o.Conditions) + 2; len(plots) != want {
		t.Errorf("%d plots, want %d: %v", len(plots), want, plots)
	}
	for _, p := range plots {
		if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.Size() < 1000 {
			t.Errorf("plot %s: %v (%d bytes)", p, err, st.Size())
		}
	}
	md := r.Markdown(plots)
	t.Log(md)
	maxGoodput := float64(o.Rate) * dumbbell.PayloadBytes / dumbbell.FrameBytes / 1e6
	tables, rows := 0, 0
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| algorithm |") {
			tables++
			continue
		}
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| ---") {
			continue
		}
		rows++
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 8 {
			t.Errorf("row %q has %d cells, want 8", line, len(cells))
			continue
		}
		var v [8]float64
		for i, c := range cells[1:] {
			f, err := strconv.ParseFloat(c, 64)
			if err != nil {
				t.Errorf("row %q: cell %d %q is not a number", line, i+1, c)
			}
			v[i+1] = f
		}
		goodput, p50, p99, jainSame, jainReno, share := v[1], v[2], v[3], v[5], v[6], v[7]
		if goodput <= 0 || goodput > maxGoodput*1.02 {
			t.Errorf("row %q: goodput %.2f, want within (0, %.2f]", line, goodput, maxGoodput)
		}
		if p50 < 0 || p99 < p50 {
			t.Errorf("row %q: delays p50 %.1f p99 %.1f", line, p50, p99)
		}
		for _, j := range []float64{jainSame, jainReno} {
			if j < 0.5 || j > 1 {
				t.Errorf("row %q: Jain's index %.3f outside [0.5, 1]", line, j)
			}
		}
		if share < 0 || share > 1 {
			t.Errorf("row %q: share %.2f outside [0, 1]", line, share)
		}
	}
	if tables != len(o.Conditions) || rows != len(o.Conditions)*len(o.Algorithms) {
		t.Errorf("%d tables and %d rows, want %d and %d", tables, rows, len(o.Conditions), len(o.Conditions)*len(o.Algorithms))
	}
}
