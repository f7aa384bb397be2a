package tcpplot

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Graphs are the graphs Draw knows.
var Graphs = []string{"tsg", "cwnd", "rtt", "tput"}

// Size of the output (at 96 dots per inch for raster formats: 1152x648).
const (
	Width  = 12 * vg.Inch
	Height = 6.75 * vg.Inch
)

// Formats are the output extensions Draw writes.
var Formats = []string{".svg", ".png", ".pdf", ".jpg", ".jpeg", ".eps", ".tif", ".tiff"}

// Colours, after tcptrace's: data black, retransmissions red, ACKs green,
// window yellow-brown, SACK purple.
var (
	colData   = color.RGBA{0x10, 0x10, 0x10, 0xff}
	colRetx   = color.RGBA{0xe0, 0x10, 0x10, 0xff}
	colAck    = color.RGBA{0x10, 0x90, 0x30, 0xff}
	colWindow = color.RGBA{0xc0, 0x90, 0x00, 0xff}
	colSACK   = color.RGBA{0x90, 0x30, 0xc0, 0xff}
	colLine2  = color.RGBA{0x20, 0x60, 0xd0, 0xff}
)

// Draw draws graph for c and saves it to out, in the format of out's
// extension.
func Draw(f *File, c *Conn, graph, out string) error {
	var p *plot.Plot
	var err error
	switch graph {
	case "tsg":
		p, err = timeSequence(c)
	case "cwnd":
		p, err = cwnd(f, c)
	case "rtt":
		p, err = rtt(f, c)
	case "tput":
		p, err = throughput(c)
	default:
		return fmt.Errorf("unknown graph %q (available: %s)", graph, strings.Join(Graphs, ", "))
	}
	if err != nil {
		return err
	}
	p.X.Label.Text = "time (s)"
	p.X.Tick.Marker = niceTicks{}
	p.Y.Tick.Marker = niceTicks{}
	p.Title.Padding = vg.Points(8)
	p.Add(plotter.NewGrid())
	return p.Save(Width, Height, out)
}

// fromZero starts the y axis at 0 and leaves room above the data for the
// legend, which sits in the top right corner.
func fromZero(p *plot.Plot) {
	p.Y.Min = 0
	p.Y.Max *= 1.18
	p.Legend.Top = true
}

// byteUnit picks kB or MB for an axis whose values reach max bytes.
func byteUnit(max float64) (float64, string) {
	switch {
	case max >= 2e6:
		return 1e6, "MB"
	case max >= 2e3:
		return 1e3, "kB"
	}
	return 1, "bytes"
}

func scaleY(xys plotter.XYs, div float64) plotter.XYs {
	out := make(plotter.XYs, len(xys))
	for i, xy := range xys {
		out[i] = plotter.XY{X: xy.X, Y: xy.Y / div}
	}
	return out
}

func maxY(sets ...plotter.XYs) float64 {
	m := 0.0
	for _, xys := range sets {
		for _, xy := range xys {
			m = math.Max(m, xy.Y)
		}
	}
	return m
}

// niceTicks puts about eight labelled ticks on round numbers (1, 2 or 5
// times a power of ten), with unlabelled ticks between them.
type niceTicks struct{}

// Ticks implements plot.Ticker.
func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', 6, 64)}}
	}
	raw := (hi - lo) / 8
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			step = m * mag
			break
		}
	}
	minor := step / 5
	if step/mag == 2 || step/mag == 20 {
		minor = step / 4
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/minor) * minor; v <= hi+minor/1e6; v += minor {
		k := math.Round(v / minor)
		v = k * minor
		t := plot.Tick{Value: v}
		if math.Abs(math.Remainder(v, step)) < minor/1e3 {
			t.Label = strconv.FormatFloat(v, 'f', max(0, -int(math.Floor(math.Log10(step)+1e-9))), 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// CheckFormat says whether out's extension is one Draw writes.
func CheckFormat(out string) error {
	ext := strings.ToLower(filepath.Ext(out))
	for _, f := range Formats {
		if ext == f {
			return nil
		}
	}
	return fmt.Errorf("%q: unknown output format %q (use %s)", out, ext, strings.Join(Formats, ", "))
}

func newPlot(what string, c *Conn) *plot.Plot {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s — conn %d: %s → %s", what, c.N, c.Sender(), c.Receiver())
	p.Title.TextStyle.Font.Size = vg.Points(13)
	return p
}

// direction splits the connection's segments into the data direction and
// the ACK direction, with relative sequence numbers.
type direction struct {
	data, acks []Pkt
	base       uint32 // sequence number that is offset 0: ISN+1 if the SYN was seen
	wscale     int    // the receiver's window scale; -1 if unknown
}

func split(c *Conn) direction {
	fromA := c.SenderIsA()
	var d direction
	synSeen, baseSet := false, false
	var sndWS, rcvWS = -1, -1
	var sndSYN, rcvSYN bool
	for _, p := range c.Pkts {
		if p.FromA == fromA {
			d.data = append(d.data, p)
			if p.has('S') {
				sndSYN, sndWS = true, p.WScale
				if !synSeen {
					d.base, synSeen, baseSet = p.Seq+1, true, true
				}
			}
			if !baseSet {
				d.base, baseSet = p.Seq, true
			}
		} else {
			d.acks = append(d.acks, p)
			if p.has('S') {
				rcvSYN, rcvWS = true, p.WScale
			}
		}
	}
	switch {
	case sndSYN && rcvSYN && sndWS >= 0 && rcvWS >= 0:
		d.wscale = rcvWS
	case sndSYN && rcvSYN:
		d.wscale = 0 // one side did not offer scaling: none is used
	default:
		d.wscale = -1
	}
	return d
}

// rel is a sequence number as an offset from base (wrapping is allowed).
func (d *direction) rel(seq uint32) float64 { return float64(int32(seq - d.base)) }

func timeSequence(c *Conn) (*plot.Plot, error) {
	d := split(c)
	if len(d.data) == 0 {
		return nil, fmt.Errorf("conn %d carries no segments from %s", c.N, c.Sender())
	}
	p := newPlot("time–sequence", c)
	var data, retx, sack segments
	data.style = draw.LineStyle{Color: colData, Width: vg.Points(1)}
	retx.style = draw.LineStyle{Color: colRetx, Width: vg.Points(1.6)}
	sack.style = draw.LineStyle{Color: colSACK, Width: vg.Points(1.2)}
	high, haveHigh := 0.0, false
	for _, pk := range d.data {
		n := pk.seqLen()
		if n == 0 {
			continue
		}
		lo := d.rel(pk.Seq)
		hi := lo + float64(n)
		if haveHigh && lo < high {
			retx.add(pk.T, lo, hi)
		} else {
			data.add(pk.T, lo, hi)
		}
		if !haveHigh || hi > high {
			high, haveHigh = hi, true
		}
	}
	var acks, wnd plotter.XYs
	for _, pk := range d.acks {
		if !pk.has('A') {
			continue
		}
		a := d.rel(pk.Ack)
		acks = append(acks, plotter.XY{X: pk.T, Y: a})
		if d.wscale >= 0 && !pk.has('S') {
			wnd = append(wnd, plotter.XY{X: pk.T, Y: a + float64(int(pk.Win)<<d.wscale)})
		}
		for _, b := range pk.SACK {
			sack.add(pk.T, d.rel(b[0]), d.rel(b[1]))
		}
	}
	div, unit := byteUnit(math.Max(high, maxY(wnd)))
	p.Y.Label.Text = "sequence offset (" + unit + ")"
	for _, s := range []*segments{&data, &retx, &sack} {
		s.scale(div)
	}
	p.Add(&data)
	p.Legend.Add("data", &data)
	if len(acks) > 0 {
		addStep(p, scaleY(acks, div), colAck, "ACK")
	}
	if len(wnd) > 0 {
		addStep(p, scaleY(wnd, div), colWindow, "receive window (ACK + win << wscale)")
	} else if len(acks) > 0 {
		p.Title.Text += " (window scale unknown: no SYNs)"
	}
	if len(sack.segs) > 0 {
		p.Add(&sack)
		p.Legend.Add("SACK blocks", &sack)
	}
	if len(retx.segs) > 0 {
		// Bars are too short to see on a whole transfer: ring each one.
		var at plotter.XYs
		for _, g := range retx.segs {
			at = append(at, plotter.XY{X: g[0], Y: g[1]})
		}
		rings, err := plotter.NewScatter(at)
		if err != nil {
			return nil, err
		}
		rings.GlyphStyle = draw.GlyphStyle{Color: colRetx, Radius: vg.Points(3.5), Shape: draw.RingGlyph{}}
		p.Add(&retx, rings)
		p.Legend.Add(fmt.Sprintf("retransmission (%d)", len(retx.segs)), &retx, rings)
	}
	// The data climbs from bottom left to top right: the legend goes
	// below it.
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.YOffs = vg.Points(8)
	return p, nil
}

func addStep(p *plot.Plot, xys plotter.XYs, col color.Color, name string) {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return
	}
	l.StepStyle = plotter.PostStep
	l.Color = col
	l.Width = vg.Points(1.2)
	p.Add(l)
	p.Legend.Add(name, l)
}

// stackSends says whether the trace's control-block samples describe the
// sender shown (they are the stack's, end A).
func stackSends(f *File, c *Conn) bool { return f.FromTrace && len(c.CBs) > 0 && c.SenderIsA() }

func cwnd(f *File, c *Conn) (*plot.Plot, error) {
	if stackSends(f, c) {
		p := newPlot("congestion window (netstack's cwnd × MSS)", c)
		var cw, ss plotter.XYs
		for _, s := range c.CBs {
			cw = append(cw, plotter.XY{X: s.T, Y: float64(s.Cwnd * s.MSS)})
			if s.Ssthresh < math.MaxInt32 {
				ss = append(ss, plotter.XY{X: s.T, Y: float64(s.Ssthresh * s.MSS)})
			}
		}
		div, unit := byteUnit(maxY(cw))
		p.Y.Label.Text = "bytes (" + unit + ")"
		addStep(p, scaleY(cw, div), colLine2, "cwnd")
		if len(ss) > 0 {
			addStep(p, scaleY(ss, div), colRetx, "ssthresh")
		}
		fromZero(p)
		return p, nil
	}
	d := split(c)
	p := newPlot("bytes in flight, estimated from packets (cwnd is not in the file)", c)
	var xys plotter.XYs
	var sent, acked float64
	var haveSent, haveAck bool
	// Walk both directions in time order.
	for _, pk := range merge(d) {
		if pk.FromA == c.SenderIsA() {
			if n := pk.seqLen(); n > 0 {
				end := d.rel(pk.Seq) + float64(n)
				if !haveSent || end > sent {
					sent, haveSent = end, true
				}
			}
		} else if pk.has('A') {
			if a := d.rel(pk.Ack); !haveAck || a > acked {
				acked, haveAck = a, true
			}
		}
		if haveSent && haveAck {
			xys = append(xys, plotter.XY{X: pk.T, Y: math.Max(0, sent-acked)})
		}
	}
	if len(xys) == 0 {
		return nil, fmt.Errorf("conn %d: no data acknowledged, nothing in flight to show", c.N)
	}
	div, unit := byteUnit(maxY(xys))
	p.Y.Label.Text = "bytes (" + unit + ")"
	addStep(p, scaleY(xys, div), colLine2, "in flight (highest sent − highest ACK)")
	fromZero(p)
	return p, nil
}

// merge returns the data and ACK segments in time order.
func merge(d direction) []Pkt {
	out := make([]Pkt, 0, len(d.data)+len(d.acks))
	i, j := 0, 0
	for i < len(d.data) || j < len(d.acks) {
		if j >= len(d.acks) || (i < len(d.data) && d.data[i].T <= d.acks[j].T) {
			out = append(out, d.data[i])
			i++
		} else {
			out = append(out, d.acks[j])
			j++
		}
	}
	return out
}

func rtt(f *File, c *Conn) (*plot.Plot, error) {
	if stackSends(f, c) {
		p := newPlot("smoothed RTT (netstack's srtt and rttvar)", c)
		p.Y.Label.Text = "RTT (ms)"
		var srtt, rttvar plotter.XYs
		for _, s := range c.CBs {
			if s.SRTTus == 0 {
				continue
			}
			srtt = append(srtt, plotter.XY{X: s.T, Y: float64(s.SRTTus) / 1000})
			rttvar = append(rttvar, plotter.XY{X: s.T, Y: float64(s.RTTVarus) / 1000})
		}
		if len(srtt) == 0 {
			return nil, fmt.Errorf("conn %d: netstack took no RTT sample", c.N)
		}
		addStep(p, srtt, colLine2, "srtt")
		addStep(p, rttvar, colWindow, "rttvar")
		fromZero(p)
		return p, nil
	}
	samples := karnRTT(split(c))
	if len(samples) == 0 {
		return nil, fmt.Errorf("conn %d: no segment was acknowledged without being retransmitted, so no RTT sample (Karn's rule)", c.N)
	}
	p := newPlot("RTT samples from data→ACK matching (Karn's rule)", c)
	p.Y.Label.Text = "RTT (ms)"
	sc, err := plotter.NewScatter(samples)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle = draw.GlyphStyle{Color: colLine2, Radius: vg.Points(1.6), Shape: draw.CircleGlyph{}}
	p.Add(sc)
	p.Legend.Add(fmt.Sprintf("RTT sample (%d)", len(samples)), sc)
	fromZero(p)
	return p, nil
}

// karnRTT matches each ACK to the latest segment it newly acknowledges and
// times the pair; segments sent more than once give no sample (Karn's
// rule), nor do ACKs that acknowledge nothing new.
func karnRTT(d direction) plotter.XYs {
	type sent struct {
		start, end float64
		t          float64
		retrans    bool
	}
	var pending []sent // in order of end
	var out plotter.XYs
	var acked float64
	haveAck := false
	for _, pk := range merge(d) {
		if pk.FromA == (len(d.data) > 0 && d.data[0].FromA) {
			n := pk.seqLen()
			if n == 0 {
				continue
			}
			lo := d.rel(pk.Seq)
			end := lo + float64(n)
			retrans := false
			for i := range pending {
				if pending[i].start < end && lo < pending[i].end {
					pending[i].retrans = true
					retrans = true
				}
			}
			if haveAck && end <= acked {
				continue
			}
			if !retrans && (len(pending) == 0 || end > pending[len(pending)-1].end) {
				pending = append(pending, sent{start: lo, end: end, t: pk.T})
			}
			continue
		}
		if !pk.has('A') {
			continue
		}
		a := d.rel(pk.Ack)
		if haveAck && a <= acked {
			continue
		}
		acked, haveAck = a, true
		k := -1
		for i := range pending {
			if pending[i].end <= a {
				k = i
			}
		}
		if k >= 0 {
			if !pending[k].retrans {
				out = append(out, plotter.XY{X: pk.T, Y: (pk.T - pending[k].t) * 1000})
			}
			pending = pending[k+1:]
		}
	}
	return out
}

func throughput(c *Conn) (*plot.Plot, error) {
	d := split(c)
	dur := c.Last - c.First
	if dur <= 0 {
		return nil, fmt.Errorf("conn %d lasts no time", c.N)
	}
	// About 100 intervals, rounded to a readable length.
	interval := niceInterval(dur / 100)
	bins := make([]float64, int(dur/interval)+1)
	var acked float64
	haveAck := false
	for _, pk := range d.acks {
		if !pk.has('A') {
			continue
		}
		a := d.rel(pk.Ack)
		if !haveAck {
			acked, haveAck = a, true
			continue
		}
		if a > acked {
			i := int((pk.T - c.First) / interval)
			if i >= len(bins) {
				i = len(bins) - 1
			}
			bins[i] += a - acked
			acked = a
		}
	}
	p := newPlot(fmt.Sprintf("throughput (bytes acknowledged per %s)", fmtInterval(interval)), c)
	p.Y.Label.Text = "throughput (Mbit/s)"
	xys := make(plotter.XYs, len(bins))
	var total float64
	for i, b := range bins {
		xys[i] = plotter.XY{X: c.First + float64(i)*interval, Y: b * 8 / interval / 1e6}
		total += b
	}
	addStep(p, xys, colLine2, fmt.Sprintf("mean %.1f Mbit/s", total*8/dur/1e6))
	fromZero(p)
	return p, nil
}

func niceInterval(d float64) float64 {
	for _, v := range []float64{1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60} {
		if d <= v {
			return v
		}
	}
	return 60
}

func fmtInterval(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%g ms", s*1000)
	}
	return fmt.Sprintf("%g s", s)
}

// segments draws vertical bars (x, y0..y1) with small end ticks, the way
// tcptrace draws segments and SACK blocks.
type segments struct {
	style draw.LineStyle
	segs  [][3]float64
}

func (s *segments) add(x, y0, y1 float64) { s.segs = append(s.segs, [3]float64{x, y0, y1}) }

func (s *segments) scale(div float64) {
	for i := range s.segs {
		s.segs[i][1] /= div
		s.segs[i][2] /= div
	}
}

// Plot implements plot.Plotter.
func (s *segments) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	tick := vg.Points(1.5)
	for _, g := range s.segs {
		x, y0, y1 := trX(g[0]), trY(g[1]), trY(g[2])
		c.StrokeLine2(s.style, x, y0, x, y1)
		c.StrokeLine2(s.style, x-tick, y1, x+tick, y1)
	}
}

// DataRange implements plot.DataRanger.
func (s *segments) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, ymin = math.Inf(1), math.Inf(1)
	xmax, ymax = math.Inf(-1), math.Inf(-1)
	for _, g := range s.segs {
		xmin, xmax = math.Min(xmin, g[0]), math.Max(xmax, g[0])
		ymin, ymax = math.Min(ymin, g[1]), math.Max(ymax, g[2])
	}
	return
}

// Thumbnail implements plot.Thumbnailer.
func (s *segments) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(s.style, c.Min.X, y, c.Max.X, y)
}
