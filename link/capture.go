package link

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// SnapLen is the largest frame a capture records whole (tcpdump's default).
const SnapLen = 262144

// PcapWriter writes Ethernet frames from any number of NICs to one pcap
// stream. It is safe for concurrent use. A write error stops the capture
// (and is kept for Close) rather than disturbing the stack.
type PcapWriter struct {
	snapLen int
	mu      sync.Mutex
	buf     *bufio.Writer
	w       *pcapgo.Writer
	closer  io.Closer
	err     error
	Frames  atomic.Uint64
	Dropped atomic.Uint64 // frames not written because of an earlier write error
}

// NewPcapWriter writes the pcap file header (nanosecond timestamps,
// LINKTYPE_ETHERNET) to w. If w is an io.Closer, Close closes it.
func NewPcapWriter(w io.Writer) (*PcapWriter, error) {
	return NewPcapWriterSnapLen(w, SnapLen)
}

// NewPcapWriterSnapLen is NewPcapWriter recording at most snapLen bytes of
// each frame.
func NewPcapWriterSnapLen(w io.Writer, snapLen int) (*PcapWriter, error) {
	p := &PcapWriter{snapLen: snapLen, buf: bufio.NewWriterSize(w, 1<<20)}
	if c, ok := w.(io.Closer); ok {
		p.closer = c
	}
	p.w = pcapgo.NewWriterNanos(p.buf)
	if err := p.w.WriteFileHeader(uint32(snapLen), layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("writing pcap header: %w", err)
	}
	// The header goes out at once so a reader started now sees a valid file.
	if err := p.buf.Flush(); err != nil {
		return nil, fmt.Errorf("writing pcap header: %w", err)
	}
	return p, nil
}

// WriteFrame records one frame, seen now.
func (p *PcapWriter) WriteFrame(frame []byte) {
	p.WriteFrameAt(time.Now(), frame, len(frame))
}

// WriteFrameAt records a frame seen at t whose length on the wire was
// origLen (frame may hold only its first bytes).
func (p *PcapWriter) WriteFrameAt(t time.Time, frame []byte, origLen int) {
	if len(frame) > p.snapLen {
		frame = frame[:p.snapLen]
	}
	ci := gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(frame), Length: max(origLen, len(frame))}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		p.Dropped.Add(1)
		return
	}
	if err := p.w.WritePacket(ci, frame); err != nil {
		p.err = err
		p.Dropped.Add(1)
		return
	}
	p.Frames.Add(1)
}

// Flush pushes buffered frames to the underlying writer.
func (p *PcapWriter) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = p.buf.Flush()
		if p.err != nil {
			return p.err
		}
		return nil
	}
	return p.err
}

// Close flushes and closes the underlying writer; it reports the first
// write error the capture met.
func (p *PcapWriter) Close() error {
	err := p.Flush()
	if p.closer != nil {
		if cerr := p.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// captureEndpoint records every frame passing between a NIC and its link.
type captureEndpoint struct {
	nested.Endpoint
	w *PcapWriter
}

var (
	_ stack.LinkEndpoint      = (*captureEndpoint)(nil)
	_ stack.GSOEndpoint       = (*captureEndpoint)(nil)
	_ stack.NetworkDispatcher = (*captureEndpoint)(nil)
)

// WithCapture wraps lower so that every frame it sends or receives is
// written to w. Place it below the Ethernet framing so whole frames are seen.
func WithCapture(lower stack.LinkEndpoint, w *PcapWriter) stack.LinkEndpoint {
	c := &captureEndpoint{w: w}
	c.Endpoint.Init(lower, c)
	return c
}

func (c *captureEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		c.record(pkt)
	}
	return c.Endpoint.WritePackets(pkts)
}

func (c *captureEndpoint) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	c.record(pkt)
	c.Endpoint.DeliverNetworkPacket(proto, pkt)
}

func (c *captureEndpoint) record(pkt *stack.PacketBuffer) {
	b := pkt.ToBuffer()
	c.w.WriteFrame(b.Flatten())
	b.Release()
}
