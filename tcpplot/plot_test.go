package tcpplot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/xml"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/observe"
	"github.com/ustack/ustack/tcpplot"
)

// lossyTransfer moves n bytes from a to b over a pair that drops 1% of
// frames each way, tracing a and capturing a's link, and returns the
// trace and pcap file names. Set USTACK_PLOT_DIR to keep them (and the
// images the tests draw) for a look.
func lossyTransfer(t *testing.T, n int64) (trace, pcap, dir string) {
	t.Helper()
	dir = os.Getenv("USTACK_PLOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	trace, pcap = filepath.Join(dir, "lossy.jsonl"), filepath.Join(dir, "lossy.pcap")
	pf, err := os.Create(pcap)
	if err != nil {
		t.Fatal(err)
	}
	reno := ustack.TCPOptions{CongestionControl: "reno"}
	a, b, err := ustack.NewPair(
		ustack.Config{TCP: reno, Pcap: pf, LinkLoss: ustack.LinkLoss{Fraction: 0.01, Seed: 7}},
		ustack.Config{TCP: reno, LinkLoss: ustack.LinkLoss{Fraction: 0.01, Seed: 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	defer a.Close()
	tf, err := os.Create(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := observe.WriteTrace(ctx, tf, nil, observe.TraceConfig{Stack: "a", Hub: a.TCPProbe(), Mirror: a.FrameMirror()})
		done <- err
	}()
	testwait.For(t, "the trace to subscribe", func() bool { return a.TCPProbe().Subscribers() > 0 && a.FrameMirror().Subscribers() > 0 })
	// A short exchange first, so the bulk connection is not the first one.
	transfer(t, a, b, "7000", 1000)
	transfer(t, a, b, "7001", n)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return trace, pcap, dir
}

func transfer(t *testing.T, a, b *ustack.Stack, port string, n int64) {
	t.Helper()
	ln, err := b.Listen("tcp4", "10.0.9.2:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	c, err := a.Dial("tcp4", "10.0.9.2:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var seed [32]byte
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.NewChaCha8(seed), n)); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if sum := <-got; sum != [32]byte(h.Sum(nil)) {
		t.Fatal("the receiver's SHA-256 differs")
	}
	io.Copy(io.Discard, c) // the peer's FIN
}

func TestPlots(t *testing.T) {
	trace, pcap, dir := lossyTransfer(t, 4<<20)
	for _, src := range []string{trace, pcap} {
		f, err := tcpplot.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Conns) != 2 {
			t.Fatalf("%s: %d connections, want 2", src, len(f.Conns))
		}
		c := f.Busiest()
		if c.N != 2 || !strings.HasSuffix(c.Receiver(), ":7001") {
			t.Fatalf("%s: busiest is conn %d %s → %s, want conn 2 to port 7001", src, c.N, c.Sender(), c.Receiver())
		}
		var list bytes.Buffer
		f.List(&list)
		if !strings.Contains(list.String(), "10.0.9.2:7000") || strings.Count(list.String(), "\n") != 3 {
			t.Errorf("list:\n%s", list.String())
		}
		kind := strings.TrimPrefix(filepath.Ext(src), ".")
		for _, g := range tcpplot.Graphs {
			for _, ext := range []string{".svg", ".png"} {
				out := filepath.Join(dir, g+"-"+kind+ext)
				if err := tcpplot.Draw(f, c, g, out); err != nil {
					t.Fatalf("%s %s: %v", src, g, err)
				}
				if ext == ".svg" {
					checkSVG(t, out, "time (s)")
				} else {
					checkPNG(t, out)
				}
			}
		}
	}
}

// checkSVG parses the file as XML and looks for the axis label.
func checkSVG(t *testing.T, path, label string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	var texts []string
	inText := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not XML: %v", path, err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			inText = x.Name.Local == "text"
		case xml.CharData:
			if inText {
				texts = append(texts, string(x))
			}
		case xml.EndElement:
			inText = false
		}
	}
	all := strings.Join(texts, "|")
	if !strings.Contains(all, label) || !strings.Contains(all, "conn 2") {
		t.Errorf("%s: texts %q lack %q or the title", path, all, label)
	}
}

// checkPNG decodes the file, checks its size and that it is not blank.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	w, h := float64(tcpplot.Width/vg.Inch)*96, float64(tcpplot.Height/vg.Inch)*96
	want := image.Rect(0, 0, int(w+0.5), int(h+0.5))
	if img.Bounds() != want {
		t.Errorf("%s is %v, want %v", path, img.Bounds(), want)
	}
	// Count pixels that are neither white nor near it: axes, text and
	// data must cover a fair share.
	inked := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r < 0xc000 || g < 0xc000 || bl < 0xc000 {
				inked++
			}
		}
	}
	if share := float64(inked) / float64(b.Dx()*b.Dy()/4); share < 0.01 {
		t.Errorf("%s is nearly blank: %.2f%% inked", path, share*100)
	}
}

// A trace with rule records (a lab router's) loads: plot skips the kinds
// it does not draw.
func TestLoadSkipsRuleRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	text := `{"kind":"start","version":1,"stack":"lab.r1","time":"2026-12-04T08:00:00Z","filter":""}
{"kind":"rule","t":0.001,"table":"filter","chain":"INPUT","rule":"-A INPUT -p tcp --dport 22 -j REJECT","index":2,"verdict":"REJECT","proto":"tcp","src":"10.1.0.9:40000","dst":"10.1.0.1:22","len":40}
{"kind":"pkt","t":0.002,"local":"10.1.0.1:80","remote":"10.1.0.9:40001","dir":"in","seq":1000,"len":0,"ack":0,"win":65535,"wscale_applied":false,"flags":"S"}
{"kind":"end","t":0.003,"samples":0,"packets":1,"rules":1,"dropped":0}
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := tcpplot.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Conns) != 1 || f.Skipped != 1 {
		t.Errorf("%d connections, %d lines skipped; want 1 and 1 (the rule record)", len(f.Conns), f.Skipped)
	}
}
