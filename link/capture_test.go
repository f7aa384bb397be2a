package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// TestPcapWriterConcurrent writes frames from many goroutines and reads
// them all back whole.
func TestPcapWriterConcurrent(t *testing.T) {
	var out bytes.Buffer
	w, err := NewPcapWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != 24 {
		t.Fatalf("after NewPcapWriter the stream holds %d bytes, want the 24-byte header", out.Len())
	}
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				frame := make([]byte, 60+i%1000)
				frame[0] = byte(g)
				binary.BigEndian.PutUint16(frame[1:], uint16(i))
				binary.BigEndian.PutUint16(frame[12:], 0x0800)
				w.WriteFrame(frame)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r, err := pcapgo.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Snaplen() != SnapLen {
		t.Errorf("link type %v snaplen %d, want Ethernet %d", r.LinkType(), r.Snaplen(), SnapLen)
	}
	seen := map[[3]byte]bool{}
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", len(seen), err)
		}
		if len(data) != ci.Length || len(data) < 60 {
			t.Fatalf("frame of %d bytes, length %d", len(data), ci.Length)
		}
		seen[[3]byte(data[:3])] = true
	}
	if len(seen) != writers*each || w.Frames.Load() != writers*each || w.Dropped.Load() != 0 {
		t.Errorf("read %d distinct frames, Frames=%d Dropped=%d; want %d, %d, 0", len(seen), w.Frames.Load(), w.Dropped.Load(), writers*each, writers*each)
	}
}

func TestPcapWriterSnapLen(t *testing.T) {
	var out bytes.Buffer
	w, err := NewPcapWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteFrame(make([]byte, SnapLen+100))
	w.Close()
	r, err := pcapgo.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	data, ci, err := r.ReadPacketData()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != SnapLen || ci.CaptureLength != SnapLen || ci.Length != SnapLen+100 {
		t.Errorf("captured %d (CaptureLength %d) of %d, want %d of %d", len(data), ci.CaptureLength, ci.Length, SnapLen, SnapLen+100)
	}
}

// failingWriter accepts limit bytes, then fails; it records Close.
type failingWriter struct {
	limit  int
	closed bool
}

var errDiskFull = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n := f.limit
		f.limit = 0
		return n, errDiskFull
	}
	f.limit -= len(p)
	return len(p), nil
}

func (f *failingWriter) Close() error { f.closed = true; return nil }

// TestPcapWriterError: a failing writer stops the capture, later frames
// are counted as dropped, and Close reports the error and still closes.
func TestPcapWriterError(t *testing.T) {
	if _, err := NewPcapWriter(&failingWriter{limit: 10}); err == nil {
		t.Error("NewPcapWriter on a writer that fails the header succeeded")
	}
	fw := &failingWriter{limit: 24 + 1000}
	w, err := NewPcapWriter(fw)
	if err != nil {
		t.Fatal(err)
	}
	// The 1 MiB buffer takes these; the error shows at Flush.
	for range 100 {
		w.WriteFrame(make([]byte, 100))
	}
	if err := w.Flush(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Flush: %v, want the writer's error", err)
	}
	w.WriteFrame(make([]byte, 100))
	if w.Dropped.Load() != 1 {
		t.Errorf("Dropped = %d after a frame written past the error, want 1", w.Dropped.Load())
	}
	if err := w.Close(); !errors.Is(err, errDiskFull) {
		t.Errorf("Close: %v, want the writer's error", err)
	}
	if !fw.closed {
		t.Error("Close did not close the underlying writer")
	}
}
