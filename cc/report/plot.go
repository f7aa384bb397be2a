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

	"github.com/ustack/ustack/tcpplot"
)

// Plot draws the report's graphs into dir as SVG files and returns their
// paths relative to dir's parent, prefixed with dir's base name (how the
// Markdown beside dir links them):
//
//   - per condition, goodput against queueing delay: a point at the
//     median delay with a bar to the 99th percentile, per algorithm;
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
		if err := save(p, "delay-goodput-"+cond.slug()+".svg"); err != nil {
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

// delayGoodput is condition i's goodput against queueing delay.
func (r *Report) delayGoodput(i int) (*plot.Plot, error) {
	o := r.Options
	p := plot.New()
	p.Title.Text = fmt.Sprintf("goodput against queueing delay, %g Mbit/s, %v, %s (two flows of each algorithm)", float64(o.Rate)/1e6, o.RTT, o.Conditions[i])
	p.X.Label.Text = "queueing delay (ms): median, bar to the 99th percentile"
	p.Y.Label.Text = "goodput of both flows (Mbit/s)"
	p.Add(plotter.NewGrid())
	var pts plotter.XYs
	var errs plotter.XErrors
	var labels []string
	for _, c := range r.Cells[i] {
		p50, p99 := ms(c.Delay(0.5)), ms(c.Delay(0.99))
		pts = append(pts, plotter.XY{X: p50, Y: c.Goodput() / 1e6})
		errs = append(errs, struct{ Low, High float64 }{0, p99 - p50})
		labels = append(labels, c.Algorithm)
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle.Radius = vg.Points(3)
	sc.GlyphStyle.Color = color.RGBA{0x20, 0x60, 0xd0, 0xff}
	bars, err := plotter.NewXErrorBars(struct {
		plotter.XYer
		plotter.XErrorer
	}{pts, errs})
	if err != nil {
		return nil, err
	}
	bars.LineStyle.Color = color.RGBA{0x20, 0x60, 0xd0, 0x80}
	lb, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = 0.1
		lb.TextStyle[i].YAlign = 0.2
	}
	p.Add(bars, sc, lb)
	p.X.Min, p.Y.Min = 0, 0
	p.Y.Max = max(p.Y.Max*1.05, float64(o.Rate)/1e6)
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
