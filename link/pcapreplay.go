package link

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ReplayOptions say how a Replay feeds its capture to the stack.
type ReplayOptions struct {
	// Speed scales the capture's clock: 1 replays frames with the gaps
	// between their timestamps (real time), N > 1 N times faster, and 0
	// as fast as the stack takes them.
	Speed float64
	// KeepMAC leaves unicast destination MACs as captured. By default they
	// are rewritten to the endpoint's own MAC: the capture was taken on
	// another machine, whose MAC the stack would ignore as not its own.
	KeepMAC bool
	// Out, if not nil, records every frame the stack sends, with its time.
	Out *PcapWriter
	// Logf, if not nil, is told when the capture ends and why reading stopped.
	Logf func(format string, args ...any)
	// MaxFrame, if not 0, is the longest frame handed on, Ethernet header
	// included; longer ones (a capture's GRO or TSO super-frames) are
	// skipped, as a link of that MTU could not carry them.
	MaxFrame int
}

// ParseReplaySpeed reads a replay speed as --net pcap and a lab's pcap
// link take it: realtime (1), max (0: as fast as the receiver takes the
// frames) or a positive factor such as 10.
func ParseReplaySpeed(s string) (float64, error) {
	switch s {
	case "realtime":
		return 1, nil
	case "max":
		return 0, nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("speed %q: want realtime, max or a positive factor such as 10", s)
	}
	return n, nil
}

// ReplaySource reads a capture's records as Ethernet frames for one
// interface (link types Ethernet, Linux cooked capture and raw IP, the
// latter two given Ethernet headers), each handed on at its time in the
// capture's clock. It is the reading half of a replay: a Replay endpoint
// delivers its frames to a stack, a lab's pcap link writes them to a
// node's interface.
type ReplaySource struct {
	name     string
	f        *os.File
	r        *pcapgo.Reader
	linkType layers.LinkType
	opts     ReplayOptions
	addr     tcpip.LinkAddress

	neigh replayNeighbours

	// Replayed counts the frames handed on, Skipped the records that could
	// not be made into an Ethernet frame or were longer than MaxFrame (and
	// a malformed record header, which ends the reading), Answered the
	// receiver's address resolutions answered in a sender's place
	// (Answer).
	Replayed, Skipped, Answered atomic.Uint64
}

// OpenReplaySource opens the capture at path for an interface whose MAC is
// addr. It fails when the file is missing or is not a pcap file of a link
// type it knows; opts.Out is not its to use.
func OpenReplaySource(path string, addr tcpip.LinkAddress, opts ReplayOptions) (*ReplaySource, error) {
	if opts.Speed < 0 {
		return nil, fmt.Errorf("speed %v: want 0 (as fast as possible) or more", opts.Speed)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := pcapgo.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a pcap file (%v); pcapng files convert with editcap -F pcap", path, err)
	}
	switch lt := r.LinkType(); lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
	default:
		f.Close()
		return nil, fmt.Errorf("%s: link type %v is not replayable (want Ethernet, Linux cooked or raw IP)", path, lt)
	}
	return &ReplaySource{name: path, f: f, r: r, linkType: r.LinkType(), opts: opts, addr: addr}, nil
}

// Name is the capture's path.
func (s *ReplaySource) Name() string { return s.name }

// Close closes the capture file. Run must have returned.
func (s *ReplaySource) Close() error { return s.f.Close() }

func (s *ReplaySource) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// Run reads the capture and hands each frame to deliver when its time
// comes, until the capture ends, done is closed or deliver returns false
// (the receiver is gone). deliver may keep the frame. Run is called once.
func (s *ReplaySource) Run(done <-chan struct{}, deliver func(frame []byte) bool) {
	var first time.Time
	start := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		data, ci, err := s.r.ReadPacketData()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				s.logf("pcap %s: end of capture: %d frames replayed, %d skipped; the link stays up", s.name, s.Replayed.Load(), s.Skipped.Load())
			} else {
				// A broken record header leaves no way to find the next one.
				s.Skipped.Add(1)
				s.logf("pcap %s: reading stopped at a malformed record (%v): %d frames replayed, %d skipped; the link stays up", s.name, err, s.Replayed.Load(), s.Skipped.Load())
			}
			return
		}
		if s.opts.Speed > 0 {
			if first.IsZero() {
				first = ci.Timestamp
			}
			due := start.Add(time.Duration(float64(ci.Timestamp.Sub(first)) / s.opts.Speed))
			if wait := time.Until(due); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-done:
					return
				case <-timer.C:
				}
			}
		}
		select {
		case <-done:
			return
		default:
		}
		frame, ok := s.ethernetFrame(data)
		if !ok || s.opts.MaxFrame > 0 && len(frame) > s.opts.MaxFrame {
			s.Skipped.Add(1)
			continue
		}
		s.neigh.learn(frame)
		if !deliver(frame) {
			return
		}
		s.Replayed.Add(1)
	}
}

// Answer returns the reply the capture's sender would give to sent, a
// frame the receiver sends: an ARP reply to an ARP request, or a
// neighbour advertisement to a neighbour solicitation, for an IP address
// the capture has sent from (so far), with the MAC it sent from. ok is
// false for any other frame. The receiver's replies to the capture then
// leave, and are recorded, instead of waiting for a resolution nobody
// answers.
func (s *ReplaySource) Answer(sent []byte) (reply []byte, ok bool) {
	reply, ok = s.neigh.answer(sent)
	if ok {
		s.Answered.Add(1)
	}
	return reply, ok
}

// Replay is a link endpoint whose received frames come from a capture
// (a ReplaySource) and whose sent frames go to an optional pcap writer. It
// carries whole Ethernet frames: wrap it in ethernet.New. When the file
// ends the endpoint stays up, so the stack keeps answering what it is sent
// locally and keeps its state for inspection.
type Replay struct {
	src  *ReplaySource
	opts ReplayOptions
	mtu  uint32

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	started    bool // Start was called
	reading    bool // the reader runs

	done      chan struct{}
	finished  chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	// Sent counts the frames the stack wrote.
	Sent atomic.Uint64
}

var _ stack.LinkEndpoint = (*Replay)(nil)

// OpenReplay opens the capture at path; reading starts once a stack has
// attached and Start is called. It fails as OpenReplaySource does.
func OpenReplay(path string, mtu int, addr tcpip.LinkAddress, opts ReplayOptions) (*Replay, error) {
	src, err := OpenReplaySource(path, addr, opts)
	if err != nil {
		return nil, err
	}
	return &Replay{src: src, opts: opts, mtu: uint32(mtu), done: make(chan struct{}), finished: make(chan struct{})}, nil
}

// Source is the capture the endpoint replays, with its counters.
func (e *Replay) Source() *ReplaySource { return e.src }

// Finished is closed when the whole capture was read (or reading failed).
func (e *Replay) Finished() <-chan struct{} { return e.finished }

func (e *Replay) readLoop() {
	defer e.wg.Done()
	defer close(e.finished)
	e.src.Run(e.done, func(frame []byte) bool {
		e.mu.RLock()
		d := e.dispatcher
		e.mu.RUnlock()
		if d == nil {
			return false
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
		d.DeliverNetworkPacket(0, pkt)
		pkt.DecRef()
		return true
	})
}

// ethernetFrame makes a record of the capture's link type into an Ethernet
// frame for the interface, or reports it malformed.
func (e *ReplaySource) ethernetFrame(data []byte) ([]byte, bool) {
	var dst, src tcpip.LinkAddress
	var typ uint16
	var payload []byte
	switch e.linkType {
	case layers.LinkTypeEthernet:
		if len(data) < header.EthernetMinimumSize {
			return nil, false
		}
		frame := append([]byte(nil), data...)
		eth := header.Ethernet(frame)
		if !e.opts.KeepMAC && !header.IsMulticastEthernetAddress(eth.DestinationAddress()) {
			copy(frame, e.addr)
		}
		return frame, true
	case layers.LinkTypeLinuxSLL:
		var sll layers.LinuxSLL
		if err := sll.DecodeFromBytes(data, nopFeedback{}); err != nil || len(sll.Payload) == 0 {
			return nil, false
		}
		typ, payload = uint16(sll.EthernetType), sll.Payload
		if sll.AddrLen == 6 {
			src = tcpip.LinkAddress(sll.Addr)
		}
		switch sll.PacketType {
		case layers.LinuxSLLPacketTypeBroadcast, layers.LinuxSLLPacketTypeMulticast:
			// The cooked header keeps no group address; broadcast reaches
			// the stack all the same.
			dst = header.EthernetBroadcastAddress
		default:
			dst = e.addr
		}
	default: // raw IP
		if len(data) == 0 {
			return nil, false
		}
		switch data[0] >> 4 {
		case 4:
			typ = uint16(header.IPv4ProtocolNumber)
		case 6:
			typ = uint16(header.IPv6ProtocolNumber)
		default:
			return nil, false
		}
		payload, dst = data, e.addr
	}
	if src == "" {
		// A locally administered stand-in for the unknown sender.
		src = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	}
	frame := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: src, DstAddr: dst, Type: tcpip.NetworkProtocolNumber(typ)})
	copy(frame[header.EthernetMinimumSize:], payload)
	return frame, true
}

// nopFeedback satisfies gopacket.DecodeFeedback for a lone layer decode.
type nopFeedback struct{}

func (nopFeedback) SetTruncated() {}

// WritePackets implements stack.LinkWriter: the stack's frames go to Out,
// and its address resolutions for the capture's senders are answered.
func (e *Replay) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		resolving := pkt.NetworkProtocolNumber == header.ARPProtocolNumber || pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber
		if e.opts.Out != nil || resolving {
			buf := pkt.ToBuffer()
			frame := buf.Flatten()
			buf.Release()
			if e.opts.Out != nil {
				e.opts.Out.WriteFrame(frame)
			}
			if reply, ok := e.src.Answer(frame); ok {
				e.deliverLater(reply)
			}
		}
		e.Sent.Add(1)
		n++
	}
	if e.opts.Out != nil {
		// Replays are slow enough that a reader may follow the file live.
		e.opts.Out.Flush()
	}
	return n, nil
}

// deliverLater delivers a reply to the stack from a goroutine of its own:
// WritePackets may be called with the stack's neighbour entry locked, which
// the reply's delivery takes.
func (e *Replay) deliverLater(frame []byte) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	select {
	case <-e.done:
		return
	default:
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.mu.RLock()
		d := e.dispatcher
		e.mu.RUnlock()
		if d == nil {
			return
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
		d.DeliverNetworkPacket(0, pkt)
		pkt.DecRef()
	}()
}

// Attach implements stack.NetworkLinkEndpoint; the first attach starts the
// replay.
func (e *Replay) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
	e.startReading()
}

// Start lets the replay begin, once a stack is attached. The stack calls
// it when its addresses and routes are in place: netstack attaches the
// endpoint when it makes the NIC, before the addresses are added, and a
// frame replayed in between (speed=max gets there within microseconds)
// finds no address to take it and is dropped.
func (e *Replay) Start() {
	e.mu.Lock()
	e.started = true
	e.mu.Unlock()
	e.startReading()
}

func (e *Replay) startReading() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started && e.dispatcher != nil && !e.reading {
		e.reading = true
		e.wg.Add(1)
		go e.readLoop()
	}
}

// IsAttached implements stack.NetworkLinkEndpoint.
func (e *Replay) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Close stops the replay and closes the capture file and Out.
func (e *Replay) Close() {
	e.closeOnce.Do(func() {
		// Under the lock: deliverLater adds to wg only while done is open.
		e.mu.Lock()
		close(e.done)
		e.mu.Unlock()
		e.wg.Wait()
		e.src.Close()
		if e.opts.Out != nil {
			e.opts.Out.Close()
		}
	})
}

func (e *Replay) Wait()                                        {}
func (e *Replay) MTU() uint32                                  { return e.mtu }
func (e *Replay) SetMTU(mtu uint32)                            { e.mtu = mtu }
func (e *Replay) Capabilities() stack.LinkEndpointCapabilities { return 0 }
func (e *Replay) MaxHeaderLength() uint16                      { return 0 }
func (e *Replay) LinkAddress() tcpip.LinkAddress               { return e.src.addr }
func (e *Replay) SetLinkAddress(tcpip.LinkAddress)             {}
func (e *Replay) ARPHardwareType() header.ARPHardwareType      { return header.ARPHardwareNone }
func (e *Replay) AddHeader(*stack.PacketBuffer)                {}
func (e *Replay) ParseHeader(*stack.PacketBuffer) bool         { return true }
func (e *Replay) SetOnCloseAction(func())                      {}
