package main

import (
	"fmt"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"

	"github.com/ustack/ustack/tcpplot"
)

// plotAll draws, per algorithm, throughput, queueing delay and window of
// both implementations on the same axes, as SVGs in dir; it returns their
// paths as the Markdown beside dir links them.
func plotAll(rows []pair, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range rows {
		for _, g := range []struct {
			name, label string
			trace       func(*Result) []point
		}{
			{"throughput", "throughput (Mbit/s, 250 ms windows)", func(r *Result) []point { return r.Throughput }},
			{"delay", "queueing delay (ms, mean per 50 ms)", func(r *Result) []point { return r.Delay }},
			{"cwnd", "congestion window (packets)", func(r *Result) []point { return r.Cwnd }},
		} {
			pl := plot.New()
			pl.Title.Text = fmt.Sprintf("%s: %s", p[0].CC, g.label)
			pl.X.Label.Text = "time (s)"
			pl.Y.Label.Text = g.label
			pl.Y.Min = 0
			var args []any
			for _, r := range p {
				xys := make(plotter.XYs, len(g.trace(r)))
				for i, pt := range g.trace(r) {
					xys[i].X, xys[i].Y = pt.t, pt.v
				}
				args = append(args, string(r.Impl), xys)
			}
			if err := plotutil.AddLines(pl, args...); err != nil {
				return nil, err
			}
			name := fmt.Sprintf("%s-%s.svg", p[0].CC, g.name)
			if err := pl.Save(tcpplot.Width, tcpplot.Height, filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("plot %s: %w", name, err)
			}
			out = append(out, filepath.Join(filepath.Base(dir), name))
		}
	}
	return out, nil
}
