package report

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/ustack/ustack/tcpplot"
)

// Plot draws the report's graphs into dir as SVG files and returns their
// paths relative to dir's parent, prefixed with dir's base name (how the
// Markdown beside dir links them):
//
//   - per condition, each algorithm's queueing delay (a point at the
//     median, a bar to the 99th percentile) labelled with its goodput;
//   - the share of each algorithm against Reno, and Jain's index of two
//     flows of the same algorithm, a bar per condition.
func (r *Report) Plot(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	save := func(p *plot.Plot, name string) error {
		if err := p.Save(tcpplot.Width, tcpplot.Height, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("report: plot %s: %w", name, err)
		}
		out = append(out, filepath.Join(filepath.Base(dir), name))
		return nil
	}
	for i, cond := range r.Options.Conditions {
		p, err := r.delayGoodput(i)
		if err != nil {
			return nil, err
		}
		if err := save(p, "delay-"+cond.slug()+".svg"); err != nil {
			return nil, err
		}
	}
	for _, g := range []struct {
		name, title, label string
		value              func(*Cell) float64
	}{
		{"share-vs-reno.svg", "share of the goodput against one Reno flow (0.5 is even)", "share", (*Cell).ShareReno},
		{"jain-same.svg", "Jain's fairness index of two flows of the same algorithm", "Jain's index", (*Cell).JainSame},
	} {
		p, err := r.bars(g.title, g.label, g.value)
		if err != nil {
			return nil, err
		}
		if err := save(p, g.name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// delayGoodput is condition i's queueing delay and goodput: a row per
// algorithm, a point at the median delay and a bar to the 99th
// percentile, labelled with the goodput.
func (r *Report) delayGoodput(i int) (*plot.Plot, error) {
	o := r.Options
	p := plot.New()
	p.Title.Text = fmt.Sprintf("queueing delay and goodput, %g Mbit/s, %v, %s (two flows of each algorithm)", float64(o.Rate)/1e6, o.RTT, o.Conditions[i])
	p.X.Label.Text = "queueing delay (ms): median, bar to the 99th percentile"
	p.Add(plotter.NewGrid())
	var pts, ends plotter.XYs
	var errs plotter.XErrors
	var labels, names []string
	cells := r.Cells[i]
	for k := range cells {
		// The first algorithm at the top.
		c := cells[len(cells)-1-k]
		p50, p99 := ms(c.Delay(0.5)), ms(c.Delay(0.99))
		y := float64(k)
		pts = append(pts, plotter.XY{X: p50, Y: y})
		ends = append(ends, plotter.XY{X: p99, Y: y})
		errs = append(errs, struct{ Low, High float64 }{0, p99 - p50})
		labels = append(labels, fmt.Sprintf("%.2f Mbit/s", c.Goodput()/1e6))
		names = append(names, c.Algorithm)
	}
	blue := color.NRGBA{0x20, 0x60, 0xd0, 0xff}
	bars, err := plotter.NewXErrorBars(struct {
		plotter.XYer
		plotter.XErrorer
	}{pts, errs})
	if err != nil {
		return nil, err
	}
	bars.LineStyle.Color = blue
	bars.LineStyle.Width = vg.Points(1.5)
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle.Radius = vg.Points(3.5)
	sc.GlyphStyle.Color = blue
	sc.GlyphStyle.Shape = draw.CircleGlyph{}
	lb, err := plotter.NewLabels(plotter.XYLabels{XYs: ends, Labels: labels})
	if err != nil {
		return nil, err
	}
	for k := range lb.TextStyle {
		lb.TextStyle[k].YAlign = -0.5
	}
	lb.Offset = vg.Point{X: vg.Points(6)}
	p.Add(bars, sc, lb)
	p.NominalY(names...)
	p.X.Min = 0
	p.X.Max *= 1.15 // room for the labels
	return p, nil
}

// bars is a grouped bar chart of value per algorithm, a bar per condition.
func (r *Report) bars(title, label string, value func(*Cell) float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = label
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	n := len(r.Options.Conditions)
	w := vg.Points(40 / float64(n))
	for i, cond := range r.Options.Conditions {
		var vals plotter.Values
		for _, c := range r.Cells[i] {
			vals = append(vals, value(c))
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		b.LineStyle.Width = 0
		b.Color = plotutil.Color(i)
		b.Offset = w * vg.Length(float64(i)-float64(n-1)/2)
		p.Add(b)
		p.Legend.Add(cond.String(), b)
	}
	var names []string
	for _, c := range r.Cells[0] {
		names = append(names, c.Algorithm)
	}
	p.NominalX(names...)
	p.Legend.Top = true
	p.Y.Max = 1.25 // room for the legend
	return p, nil
}
