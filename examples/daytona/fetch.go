package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/mutate"
	"github.com/ustack/ustack/shape"
	"github.com/ustack/ustack/tcpplot"
)

// The paper's setting: a 60 KB object over a 10 Mbit/s link with a 100 ms
// round trip. The whole link is emulated on the receiver's (attacker's)
// NIC, 50 ms each way, so it applies alike to a sender on a paired
// user-level stack and to the Linux kernel behind a tap.
const (
	objectSize = 60 << 10
	rtt        = 100 * time.Millisecond
	linkSpec   = "rate 10mbit delay 50ms"
	serverPort = 80
)

// object is the 60 KB the servers send: a pattern rather than zeros, so
// that data delivered out of place shows in the digest.
var object = func() []byte {
	b := make([]byte, objectSize)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}()

// A Sender is one server TCP: netstack with a congestion control, or the
// Linux kernel in a network namespace, with an initial window.
type Sender struct {
	Name   string
	Kernel bool   // the Linux kernel, reached through a tap
	CC     string // congestion control name
	IW     int    // initial window, segments
}

// An Attack is what the receiver does: a mutate rule on its own ACKs (none
// for the normal transfer) and whether it offers SACK.
type Attack struct {
	Name   string
	Rule   string
	NoSACK bool
}

// Result is one fetch.
type Result struct {
	Sender, Attack string
	// Completion is from the client's connect to its read of the last
	// byte, in RTTs.
	Completion float64
	// Rounds are the round trips the sender took to send the object
	// (Rounds).
	Rounds int
	// Injected counts the ACKs the mutator added.
	Injected uint64
	// Pcap is the client's capture of the transfer.
	Pcap string
	// Trace is the transfer in the client's capture.
	Trace Trace
}

// fetch connects to the server, sends a request line and reads the object,
// checking its digest. It returns the time from connect to last byte.
// A connection opened and closed first resolves the link-layer addresses,
// so that the timed one starts with its SYN, not with an ARP exchange
// across the emulated link (one more RTT).
func fetch(dial func() (net.Conn, error)) (time.Duration, error) {
	warm, err := dial()
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	warm.Close()
	start := time.Now()
	c, err := dial()
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /object\n"); err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	n, err := io.Copy(h, c)
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("read after %d bytes: %w", n, err)
	}
	if want := sha256.Sum256(object); n != objectSize || !bytes.Equal(h.Sum(nil), want[:]) {
		return 0, fmt.Errorf("got %d bytes with SHA-256 %x, want %d with %x", n, h.Sum(nil), objectSize, want)
	}
	return took, nil
}

// serve answers each connection on ln with the object: it reads the
// request line, writes the object and closes.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				return
			}
			c.Write(object)
		}()
	}
}

// clientConfig is the attacker's stack: the emulated link both ways, the
// attack's rule, a capture.
func clientConfig(a Attack, pcap io.Writer) (ustack.Config, error) {
	spec, err := shape.Parse(linkSpec)
	if err != nil {
		return ustack.Config{}, err
	}
	cfg := ustack.Config{Link: ustack.SymmetricLink(spec), Pcap: pcap}
	if a.Rule != "" {
		r, err := mutate.Parse(a.Rule)
		if err != nil {
			return ustack.Config{}, fmt.Errorf("attack %s: %w", a.Name, err)
		}
		cfg.Mutate = []mutate.Rule{r}
	}
	if a.NoSACK {
		if err := cfg.TCP.Set("tcp.sack", "0"); err != nil {
			return ustack.Config{}, err
		}
	}
	return cfg, nil
}

// runNetstack fetches the object from a netstack server on a paired stack.
func runNetstack(s Sender, a Attack, pcapPath string) (time.Duration, uint64, error) {
	pcap, err := os.Create(pcapPath)
	if err != nil {
		return 0, 0, err
	}
	ccfg, err := clientConfig(a, pcap)
	if err != nil {
		pcap.Close()
		return 0, 0, err
	}
	var scfg ustack.Config
	scfg.TCP.CongestionControl = s.CC
	scfg.TCP.InitialCwnd = s.IW
	srv, cli, err := ustack.NewPair(scfg, ccfg)
	if err != nil {
		pcap.Close()
		return 0, 0, err
	}
	defer srv.Close()
	defer cli.Close()
	ln, err := srv.Listen("tcp4", fmt.Sprintf("10.0.9.1:%d", serverPort))
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	go serve(ln)
	took, err := fetch(func() (net.Conn, error) { return cli.Dial("tcp4", ln.Addr().String()) })
	if err != nil {
		return 0, 0, err
	}
	return took, injected(cli), nil
}

func injected(s *ustack.Stack) uint64 {
	var n uint64
	for _, r := range s.MutateStats().Rules {
		n += r.Injected
	}
	return n
}

// Trace is a transfer as the client's capture shows it. The capture sits
// between the client's emulated link and the wire, and the sender is at
// the wire's other end with no delay of its own, so these are the times at
// which the sender sent each segment and received each ACK: the sender's
// view, as in a trace taken on the server.
type Trace struct {
	// Data are (time since the SYN in RTTs, end of the segment in KB of
	// the object) for each data segment, in order.
	Data [][2]float64
	// Acks are (time, acknowledged KB) for each ACK the client sent after
	// the handshake, the attack's included.
	Acks [][2]float64
}

// readTrace reads the client's capture of one transfer.
func readTrace(pcapPath string) (Trace, error) {
	f, err := tcpplot.Load(pcapPath)
	if err != nil {
		return Trace{}, err
	}
	c := f.Busiest()
	var t0 float64
	var isn uint32
	var haveSYN, haveISN bool
	var tr Trace
	kb := func(seq uint32) float64 { return float64(seq-isn) / 1024 }
	for _, p := range c.Pkts {
		t := (p.T - t0) / rtt.Seconds()
		switch {
		case p.FromA && strings.Contains(p.Flags, "S") && !haveSYN:
			t0, haveSYN = p.T, true
		case !p.FromA && strings.Contains(p.Flags, "S"):
			isn, haveISN = p.Seq+1, true
		case !haveISN:
		case !p.FromA && p.Len > 0:
			tr.Data = append(tr.Data, [2]float64{t, kb(p.Seq + uint32(p.Len))})
		case p.FromA && strings.Contains(p.Flags, "A") && p.Ack != isn && !strings.Contains(p.Flags, "F"):
			tr.Acks = append(tr.Acks, [2]float64{t, kb(p.Ack)})
		}
	}
	if !haveSYN || len(tr.Data) == 0 {
		return Trace{}, fmt.Errorf("%s: no handshake and data in the capture", filepath.Base(pcapPath))
	}
	return tr, nil
}
