package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Matrix is the results of every sender under every attack, in order.
type Matrix struct {
	Senders []Sender
	Attacks []Attack
	Results map[[2]string]Result // by sender and attack name
}

// flightGap separates two flights of data: within a flight the sender sends
// segments back to back, between two
// the sender waits for ACKs: at least half an RTT here, as no train of
// this object lasts longer than 50 ms.
const flightGap = 0.4 // RTTs

// Flights counts the flights in data (times in RTTs, in order): the round
// trips the transfer took, whatever the machine's load.
func Flights(data [][2]float64) int {
	n := 0
	for i, d := range data {
		if i == 0 || d[0]-data[i-1][0] > flightGap {
			n++
		}
	}
	return n
}

// RunMatrix fetches the object from each sender under each attack,
// reporting each result to progress as it comes.
func RunMatrix(k *Kernel, senders []Sender, attacks []Attack, pcapDir string, progress func(Result)) (*Matrix, error) {
	m := &Matrix{Senders: senders, Attacks: attacks, Results: map[[2]string]Result{}}
	for _, s := range senders {
		for _, a := range attacks {
			pcap := filepath.Join(pcapDir, s.Name+"-"+a.Name+".pcap")
			var took time.Duration
			var inj uint64
			var err error
			if s.Kernel {
				if k == nil {
					return nil, fmt.Errorf("sender %s needs the kernel's namespace", s.Name)
				}
				took, inj, err = k.runKernel(s, a, pcap)
			} else {
				took, inj, err = runNetstack(s, a, pcap)
			}
			if err != nil {
				return nil, fmt.Errorf("%s under %s: %w", s.Name, a.Name, err)
			}
			if a.Rule != "" && inj == 0 {
				return nil, fmt.Errorf("%s under %s: the receiver injected no ACK", s.Name, a.Name)
			}
			tr, err := readTrace(pcap)
			if err != nil {
				return nil, fmt.Errorf("%s under %s: %w", s.Name, a.Name, err)
			}
			r := Result{Sender: s.Name, Attack: a.Name, Completion: took.Seconds() / rtt.Seconds(), Flights: Flights(tr.Data), Injected: inj, Pcap: pcap, Trace: tr}
			m.Results[[2]string{s.Name, a.Name}] = r
			if progress != nil {
				progress(r)
			}
		}
	}
	return m, nil
}

// Speedup is normal ÷ attacked completion time for sender s under attack a.
func (m *Matrix) Speedup(s, a string) float64 {
	return m.Results[[2]string{s, "normal"}].Completion / m.Results[[2]string{s, a}].Completion
}

// Verdict classifies sender s under attack a by its flights of data: fewer
// than the normal transfer's is "vulnerable", more is "slowed", as many is
// "no gain".
func (m *Matrix) Verdict(s, a string) string {
	n, x := m.Results[[2]string{s, "normal"}].Flights, m.Results[[2]string{s, a}].Flights
	switch {
	case x < n:
		return "vulnerable"
	case x > n:
		return "slowed"
	}
	return "no gain"
}

// Markdown is the completion table (RTTs) and the vulnerability table.
func (m *Matrix) Markdown(note string) string {
	var b strings.Builder
	b.WriteString("Completion of the 60 KB fetch, connect to last byte, in RTTs of 100 ms (and the flights of data it took):\n\n| sender |")
	for _, a := range m.Attacks {
		fmt.Fprintf(&b, " %s |", a.Name)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" ---: |", len(m.Attacks)) + "\n")
	for _, s := range m.Senders {
		fmt.Fprintf(&b, "| %s |", s.Name)
		for _, a := range m.Attacks {
			r := m.Results[[2]string{s.Name, a.Name}]
			fmt.Fprintf(&b, " %.2f (%d) |", r.Completion, r.Flights)
		}
		b.WriteString("\n")
	}
	b.WriteString("\nVulnerability: fewer flights of data than the normal transfer is vulnerable, more is slowed; ×: normal ÷ attacked time:\n\n| sender |")
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
	normal, ok := m.Results[[2]string{sender, "normal"}]
	if !ok {
		return fmt.Errorf("no normal transfer for %s", sender)
	}
	attacks := m.Attacks[1:]
	maxT := normal.Trace.Data[len(normal.Trace.Data)-1][0]
	for _, a := range attacks {
		r := m.Results[[2]string{sender, a.Name}]
		maxT = max(maxT, r.Trace.Data[len(r.Trace.Data)-1][0])
	}
	grey := color.RGBA{R: 0x90, G: 0x90, B: 0x90, A: 0xff}
	red := color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	green := color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	plots := make([][]*plot.Plot, 1)
	for _, a := range attacks {
		r := m.Results[[2]string{sender, a.Name}]
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
			{normal.Trace.Data, grey, 1.8, fmt.Sprintf("normal: %.1f RTTs, %d flights", normal.Completion, normal.Flights)},
			{r.Trace.Data, red, 1.2, fmt.Sprintf("%s: %.1f RTTs, %d flights", a.Name, r.Completion, r.Flights)},
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
