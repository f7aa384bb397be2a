package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Matrix is the results of every sender under every attack, in order.
type Matrix struct {
	Senders []Sender
	Attacks []Attack
	Results map[[2]string]Result // by sender and attack name
}

// Verdict thresholds on normal ÷ attacked completion time: a transfer at
// least 20 % faster under the attack is "vulnerable", one more than 10 %
// slower is "slowed", anything between is "no gain". Each completion is
// several RTTs of 100 ms, so scheduling noise of milliseconds does not move
// a verdict.
const (
	vulnerableAt = 1.2
	slowedAt     = 0.9
)

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
			pts, err := arrivals(pcap)
			if err != nil {
				return nil, fmt.Errorf("%s under %s: %w", s.Name, a.Name, err)
			}
			r := Result{Sender: s.Name, Attack: a.Name, Completion: took.Seconds() / rtt.Seconds(), Injected: inj, Pcap: pcap, Arrivals: pts}
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

// Verdict classifies a speedup.
func Verdict(speedup float64) string {
	switch {
	case speedup >= vulnerableAt:
		return "vulnerable"
	case speedup < slowedAt:
		return "slowed"
	}
	return "no gain"
}

// Markdown is the completion table (RTTs) and the vulnerability table.
func (m *Matrix) Markdown(note string) string {
	var b strings.Builder
	b.WriteString("Completion of the 60 KB fetch, connect to last byte, in RTTs of 100 ms:\n\n| sender |")
	for _, a := range m.Attacks {
		fmt.Fprintf(&b, " %s |", a.Name)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" ---: |", len(m.Attacks)) + "\n")
	for _, s := range m.Senders {
		fmt.Fprintf(&b, "| %s |", s.Name)
		for _, a := range m.Attacks {
			fmt.Fprintf(&b, " %.2f |", m.Results[[2]string{s.Name, a.Name}].Completion)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nVulnerability: normal ÷ attacked time; vulnerable at ×%.1f or more, slowed below ×%.1f:\n\n| sender |", vulnerableAt, slowedAt)
	for _, a := range m.Attacks[1:] {
		fmt.Fprintf(&b, " %s |", a.Name)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(m.Attacks)-1) + "\n")
	for _, s := range m.Senders {
		fmt.Fprintf(&b, "| %s |", s.Name)
		for _, a := range m.Attacks[1:] {
			sp := m.Speedup(s.Name, a.Name)
			fmt.Fprintf(&b, " %s ×%.2f |", Verdict(sp), sp)
		}
		b.WriteString("\n")
	}
	if note != "" {
		b.WriteString("\n" + note + "\n")
	}
	return b.String()
}

// PlotSender draws the time-sequence plot of one sender: the highest byte
// received against time since the SYN, one line per attack, normal in
// black.
func PlotSender(m *Matrix, sender, out string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: 60 KB over 10 Mbit/s, 100 ms RTT", sender)
	p.X.Label.Text = "time since the SYN (RTTs)"
	p.Y.Label.Text = "bytes received (KB)"
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Millimeter * 2
	p.Legend.YOffs = vg.Millimeter * 2
	colours := []color.Color{
		color.Black,
		color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	}
	for i, a := range m.Attacks {
		r, ok := m.Results[[2]string{sender, a.Name}]
		if !ok {
			continue
		}
		xy := make(plotter.XYs, len(r.Arrivals))
		for j, pt := range r.Arrivals {
			xy[j].X, xy[j].Y = pt[0], pt[1]
		}
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = colours[i%len(colours)]
		sc.GlyphStyle.Radius = vg.Points(1.6)
		sc.GlyphStyle.Shape = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}, draw.TriangleGlyph{}, draw.BoxGlyph{}}[i%5]
		p.Add(sc)
		p.Legend.Add(fmt.Sprintf("%s (%.1f RTTs)", a.Name, r.Completion), sc)
	}
	p.Add(plotter.NewGrid())
	return p.Save(16*vg.Centimeter, 10*vg.Centimeter, out)
}
