package main

import (
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Matrix is the results of every sender under every attack, in order,
// each fetch repeated Runs times.
type Matrix struct {
	Senders []Sender
	Attacks []Attack
	Runs    int
	Results map[[2]string][]Result // by sender and attack name
}

// Rounds is the round trips the sender took to send the object: one for
// the first flight, and one more for each RTT from the first segment of
// data to the last, rounded to the nearest (data: times in RTTs, in
// order). Counting whole RTTs at the sender's end of the link leaves out
// the handshake and the request, and it takes a delay of half an RTT (50
// ms) to move a count: the machine's load does not.
func Rounds(data [][2]float64) int {
	if len(data) == 0 {
		return 0
	}
	return 1 + int(math.Round(data[len(data)-1][0]-data[0][0]))
}

// RunMatrix fetches the object runs times from each sender under each
// attack, reporting each result to progress as it comes.
func RunMatrix(k *Kernel, senders []Sender, attacks []Attack, runs int, pcapDir string, progress func(Result)) (*Matrix, error) {
	m := &Matrix{Senders: senders, Attacks: attacks, Runs: runs, Results: map[[2]string][]Result{}}
	for _, s := range senders {
		for _, a := range attacks {
			for i := 1; i <= runs; i++ {
				r, err := runOne(k, s, a, filepath.Join(pcapDir, fmt.Sprintf("%s-%s-%d.pcap", s.Name, a.Name, i)))
				if err != nil {
					return nil, fmt.Errorf("%s under %s: %w", s.Name, a.Name, err)
				}
				key := [2]string{s.Name, a.Name}
				m.Results[key] = append(m.Results[key], r)
				if progress != nil {
					progress(r)
				}
			}
		}
	}
	return m, nil
}

func runOne(k *Kernel, s Sender, a Attack, pcap string) (Result, error) {
	var took time.Duration
	var inj uint64
	var err error
	if s.Kernel {
		if k == nil {
			return Result{}, fmt.Errorf("sender %s needs the kernel's namespace", s.Name)
		}
		took, inj, err = k.runKernel(s, a, pcap)
	} else {
		took, inj, err = runNetstack(s, a, pcap)
	}
	if err != nil {
		return Result{}, err
	}
	if a.Rule != "" && inj == 0 {
		return Result{}, errors.New("the receiver injected no ACK")
	}
	tr, err := readTrace(pcap)
	if err != nil {
		return Result{}, err
	}
	return Result{Sender: s.Name, Attack: a.Name, Completion: took.Seconds() / rtt.Seconds(),
		Rounds: Rounds(tr.Data), Injected: inj, Pcap: pcap, Trace: tr}, nil
}

// Median is the run of sender s under attack a with the median completion
// time: the one the tables quote and the plots draw.
func (m *Matrix) Median(s, a string) Result {
	rs := slices.Clone(m.Results[[2]string{s, a}])
	slices.SortFunc(rs, func(x, y Result) int { return cmp.Compare(x.Completion, y.Completion) })
	return rs[len(rs)/2]
}

// Best is the run of sender s under attack a with the shortest completion
// time. A stall of the machine only ever slows a fetch, so the best runs are
// the ones to set beside each other when the machine is loaded.
func (m *Matrix) Best(s, a string) Result {
	return slices.MinFunc(m.Results[[2]string{s, a}], func(x, y Result) int { return cmp.Compare(x.Completion, y.Completion) })
}

// Speedup is normal ÷ attacked median completion time.
func (m *Matrix) Speedup(s, a string) float64 {
	return m.Median(s, "normal").Completion / m.Median(s, a).Completion
}

// Beat counts the runs of sender s under attack a that took fewer rounds
// than every normal run (faster), and those that took more than every
// normal run (slower).
func (m *Matrix) Beat(s, a string) (faster, slower int) {
	var normal []int
	for _, r := range m.Results[[2]string{s, "normal"}] {
		normal = append(normal, r.Rounds)
	}
	for _, r := range m.Results[[2]string{s, a}] {
		switch {
		case r.Rounds < slices.Min(normal):
			faster++
		case r.Rounds > slices.Max(normal):
			slower++
		}
	}
	return faster, slower
}

// Verdict classifies sender s under attack a (Beat): "vulnerable" when
// every attacked run was faster than every normal one, "vulnerable in K of
// N runs" when some were, "slowed" when every run was slower, "no gain"
// otherwise.
func (m *Matrix) Verdict(s, a string) string {
	n := len(m.Results[[2]string{s, a}])
	faster, slower := m.Beat(s, a)
	switch {
	case faster == n:
		return "vulnerable"
	case faster > 0:
		return fmt.Sprintf("vulnerable in %d of %d runs", faster, n)
	case slower == n:
		return "slowed"
	}
	return "no gain"
}

// roundRange is the rounds of the runs of a cell: "6" or "4–7".
func (m *Matrix) roundRange(s, a string) string {
	var fl []int
	for _, r := range m.Results[[2]string{s, a}] {
		fl = append(fl, r.Rounds)
	}
	lo, hi := slices.Min(fl), slices.Max(fl)
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}

// Markdown is the completion table (RTTs) and the vulnerability table.
func (m *Matrix) Markdown(note string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Completion of the 60 KB fetch, connect to last byte, in RTTs of 100 ms: the median of %d runs (and the rounds of data the runs took):\n\n| sender |", m.Runs)
	for _, a := range m.Attacks {
		fmt.Fprintf(&b, " %s |", a.Name)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" ---: |", len(m.Attacks)) + "\n")
	for _, s := range m.Senders {
		fmt.Fprintf(&b, "| %s |", s.Name)
		for _, a := range m.Attacks {
			fmt.Fprintf(&b, " %.2f (%s) |", m.Median(s.Name, a.Name).Completion, m.roundRange(s.Name, a.Name))
		}
		b.WriteString("\n")
	}
	b.WriteString("\nVulnerability: vulnerable when attacked runs took fewer rounds of data than every normal run, slowed when all took more; ×: normal ÷ attacked median time:\n\n| sender |")
	for _, a := range m.Attacks[1:] {
		fmt.Fprintf(&b, " %s |", a.Name)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(m.Attacks)-1) + "\n")
	for _, s := range m.Senders {
		fmt.Fprintf(&b, "| %s |", s.Name)
		for _, a := range m.Attacks[1:] {
			fmt.Fprintf(&b, " %s ×%.2f |", m.Verdict(s.Name, a.Name), m.Speedup(s.Name, a.Name))
		}
		b.WriteString("\n")
	}
	if note != "" {
		b.WriteString("\n" + note + "\n")
	}
	return b.String()
}

// PlotSender draws the time-sequence plots of one sender, one panel per
// attack in a grid of two columns, each beside the normal transfer: the segments sent (normal grey,
// attacked red) and the ACKs the sender received in the attack (green).
func PlotSender(m *Matrix, sender, out string) error {
	if len(m.Results[[2]string{sender, "normal"}]) == 0 {
		return fmt.Errorf("no normal transfer for %s", sender)
	}
	normal := m.Median(sender, "normal")
	attacks := m.Attacks[1:]
	maxT := normal.Trace.Data[len(normal.Trace.Data)-1][0]
	for _, a := range attacks {
		r := m.Median(sender, a.Name)
		maxT = max(maxT, r.Trace.Data[len(r.Trace.Data)-1][0])
	}
	grey := color.RGBA{R: 0x90, G: 0x90, B: 0x90, A: 0xff}
	red := color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	green := color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	plots := make([][]*plot.Plot, 1)
	for _, a := range attacks {
		r := m.Median(sender, a.Name)
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: %s", sender, a.Name)
		p.X.Label.Text = "time since the SYN (RTTs)"
		p.Y.Label.Text = "sequence (KB)"
		p.Legend.Top, p.Legend.Left = true, true
		p.Add(plotter.NewGrid())
		for _, layer := range []struct {
			pts    [][2]float64
			c      color.Color
			radius vg.Length
			label  string
		}{
			{r.Trace.Acks, green, 0.8, fmt.Sprintf("ACKs under %s (%d)", a.Name, len(r.Trace.Acks))},
			{normal.Trace.Data, grey, 1.8, fmt.Sprintf("normal: %.1f RTTs, %d rounds", normal.Completion, normal.Rounds)},
			{r.Trace.Data, red, 1.2, fmt.Sprintf("%s: %.1f RTTs, %d rounds", a.Name, r.Completion, r.Rounds)},
		} {
			xy := make(plotter.XYs, len(layer.pts))
			for j, pt := range layer.pts {
				xy[j].X, xy[j].Y = pt[0], pt[1]
			}
			sc, err := plotter.NewScatter(xy)
			if err != nil {
				return err
			}
			sc.GlyphStyle.Color = layer.c
			sc.GlyphStyle.Radius = vg.Points(float64(layer.radius))
			sc.GlyphStyle.Shape = draw.CircleGlyph{}
			p.Add(sc)
			p.Legend.Add(layer.label, sc)
		}
		// After the layers, which widen the axes to their data: ACKs
		// beyond the object (optimistic ones for data never sent) are
		// left out of the frame.
		p.X.Min, p.X.Max = 0, maxT+0.2
		p.Y.Min, p.Y.Max = 0, objectSize/1024+4
		row := len(plots) - 1
		if len(plots[row]) == 2 {
			plots = append(plots, nil)
			row++
		}
		plots[row] = append(plots[row], p)
	}
	const w, h = 14 * vg.Centimeter, 10 * vg.Centimeter
	for len(plots[len(plots)-1]) < 2 {
		plots[len(plots)-1] = append(plots[len(plots)-1], nil)
	}
	img := vgimg.New(2*w, h*vg.Length(len(plots)))
	dc := draw.New(img)
	canvases := plot.Align(plots, draw.Tiles{Rows: len(plots), Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4}, dc)
	for i, row := range plots {
		for j, p := range row {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
