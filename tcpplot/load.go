// Package tcpplot draws TCP connections the way tcptrace and Wireshark's
// stream graphs do — time–sequence, congestion window, RTT and throughput
// — from a ustack trace (JSON lines) or a pcap file.
package tcpplot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/observe"
)

// Pkt is one TCP segment of a connection. Seq and Ack are raw.
type Pkt struct {
	T        float64 // seconds since the start of the file
	FromA    bool    // sent by end A (see Conn)
	Seq, Ack uint32
	Len      int
	Win      uint16
	Flags    string // F S R P A U E C
	SACK     [][2]uint32
	WScale   int // on a SYN: the window scale option, -1 if absent
}

func (p *Pkt) has(flag byte) bool { return strings.IndexByte(p.Flags, flag) >= 0 }

// seqLen is the sequence space the segment takes (data, SYN, FIN).
func (p *Pkt) seqLen() int {
	n := p.Len
	if p.has('S') {
		n++
	}
	if p.has('F') {
		n++
	}
	return n
}

// CB is one control-block sample of the stack's end (end A) of a
// connection, from a trace.
type CB = api.CBRecord

// Conn is one TCP connection, its ends A and B. In a trace, A is the
// stack's end (local); in a pcap, A is the end that sent the first
// segment seen (the SYN, if the capture has it).
type Conn struct {
	N    int // numbered from 1 by first appearance
	A, B string
	Pkts []Pkt
	CBs  []CB // trace only: samples of A
	// BytesAB and BytesBA are the payload bytes each way.
	BytesAB, BytesBA int64
	First, Last      float64
}

// SenderIsA reports whether A sent more payload than B: the graphs show
// the direction that carried the most data.
func (c *Conn) SenderIsA() bool { return c.BytesAB >= c.BytesBA }

// Sender and Receiver name the ends for the direction the graphs show.
func (c *Conn) Sender() string {
	if c.SenderIsA() {
		return c.A
	}
	return c.B
}

// Receiver is the other end.
func (c *Conn) Receiver() string {
	if c.SenderIsA() {
		return c.B
	}
	return c.A
}

// File is what a trace or pcap holds.
type File struct {
	Path      string
	FromTrace bool
	Conns     []*Conn
	Skipped   int // frames or lines that were not TCP or could not be parsed
}

// Busiest returns the connection that carried the most data.
func (f *File) Busiest() *Conn {
	var best *Conn
	for _, c := range f.Conns {
		if best == nil || c.BytesAB+c.BytesBA > best.BytesAB+best.BytesBA {
			best = c
		}
	}
	return best
}

// Load reads a ustack trace or a pcap file (told apart by content).
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	br := bufio.NewReaderSize(fh, 1<<20)
	head, _ := br.Peek(4)
	f := &File{Path: path}
	if len(head) > 0 && head[0] == '{' {
		f.FromTrace = true
		err = f.readTrace(br)
	} else {
		err = f.readPcap(br)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(f.Conns) == 0 {
		return nil, fmt.Errorf("%s: no TCP connection in it", path)
	}
	return f, nil
}

type connKey struct{ a, b string }

type builder struct {
	f     *File
	conns map[connKey]*Conn
}

// conn finds or adds the connection between from and to; fromA says which
// end sent.
func (bd *builder) conn(from, to string, t float64) (*Conn, bool) {
	if c, ok := bd.conns[connKey{from, to}]; ok {
		return c, true
	}
	if c, ok := bd.conns[connKey{to, from}]; ok {
		return c, false
	}
	c := &Conn{N: len(bd.f.Conns) + 1, A: from, B: to, First: t}
	bd.f.Conns = append(bd.f.Conns, c)
	bd.conns[connKey{from, to}] = c
	return c, true
}

func (bd *builder) add(c *Conn, p Pkt) {
	c.Pkts = append(c.Pkts, p)
	if p.FromA {
		c.BytesAB += int64(p.Len)
	} else {
		c.BytesBA += int64(p.Len)
	}
	c.Last = max(c.Last, p.T)
}

func (f *File) readTrace(r io.Reader) error {
	bd := &builder{f: f, conns: map[connKey]*Conn{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var k struct {
			Kind    string `json:"kind"`
			Version int    `json:"version"`
		}
		if err := json.Unmarshal(b, &k); err != nil {
			return fmt.Errorf("line %d: %v", line, err)
		}
		switch k.Kind {
		case "start":
			if k.Version != api.TraceVersion {
				return fmt.Errorf("line %d: trace format version %d (this ustack reads %d)", line, k.Version, api.TraceVersion)
			}
		case "pkt":
			var r api.PktRecord
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("line %d: %v", line, err)
			}
			// A is the stack's end; a frame's direction says who sent it.
			c, _ := bd.conn(r.Local, r.Remote, r.T)
			p := Pkt{T: r.T, FromA: r.Dir == "out", Seq: r.Seq, Ack: r.Ack, Len: r.Len, Win: r.Win,
				Flags: r.Flags, SACK: r.SACK, WScale: -1}
			if r.WScale != nil {
				p.WScale = *r.WScale
			}
			bd.add(c, p)
		case "cb":
			var r api.CBRecord
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("line %d: %v", line, err)
			}
			c, _ := bd.conn(r.Local, r.Remote, r.T)
			c.CBs = append(c.CBs, r)
			c.Last = max(c.Last, r.T)
		case "end":
		default:
			f.Skipped++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	return nil
}

func (f *File) readPcap(r io.Reader) error {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return fmt.Errorf("neither a ustack trace nor a pcap file: %w", err)
	}
	var parse func([]byte) (observe.Segment, bool)
	switch pr.LinkType() {
	case layers.LinkTypeEthernet:
		parse = observe.ParseEthernetTCP
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		parse = observe.ParseIPTCP
	default:
		return fmt.Errorf("pcap link type %v is not supported (Ethernet or raw IP)", pr.LinkType())
	}
	bd := &builder{f: f, conns: map[connKey]*Conn{}}
	var t0 int64
	for first := true; ; first = false {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil // a capture cut short still holds what it holds
		}
		if err != nil {
			return err
		}
		if first {
			t0 = ci.Timestamp.UnixNano()
		}
		seg, ok := parse(data)
		if !ok {
			f.Skipped++
			continue
		}
		t := float64(ci.Timestamp.UnixNano()-t0) / 1e9
		from, to := addrString(seg.Src), addrString(seg.Dst)
		c, fromA := bd.conn(from, to, t)
		bd.add(c, Pkt{T: t, FromA: fromA, Seq: seg.Seq, Ack: seg.Ack, Len: seg.Len, Win: seg.Win,
			Flags: observe.FlagString(seg.Flags), SACK: seg.SACK, WScale: seg.WScale})
	}
}

func addrString(ap netip.AddrPort) string {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// List writes one line per connection.
func (f *File) List(w io.Writer) {
	conns := append([]*Conn(nil), f.Conns...)
	sort.Slice(conns, func(i, j int) bool { return conns[i].N < conns[j].N })
	fmt.Fprintf(w, "%-4s %-44s %10s %12s %12s %9s\n", "CONN", "A <-> B", "PACKETS", "BYTES A->B", "BYTES B->A", "SECONDS")
	for _, c := range conns {
		fmt.Fprintf(w, "%-4d %-44s %10d %12d %12d %9.3f\n", c.N, c.A+" <-> "+c.B, len(c.Pkts), c.BytesAB, c.BytesBA, c.Last-c.First)
	}
}
