package link

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/internal/testwait"
)

// frameRecorder keeps a copy of each delivered frame.
type frameRecorder struct{ ch chan []byte }

func (r *frameRecorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	r.ch <- append([]byte(nil), v.AsSlice()...)
	v.Release()
}

func (r *frameRecorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func frameSocketPair(t *testing.T) (*FrameSocket, *FrameSocket) {
	t.Helper()
	fds, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewFrameSocket(fds[0], 1500, tcpip.LinkAddress("\x52\x54\x00\x00\x00\x01"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewFrameSocket(fds[1], 1500, tcpip.LinkAddress("\x52\x54\x00\x00\x00\x02"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func writeFrame(e *FrameSocket, frame ...[]byte) (int, tcpip.Error) {
	var list stack.PacketBufferList
	for _, f := range frame {
		list.PushBack(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)}))
	}
	defer list.DecRef()
	return e.WritePackets(list)
}

func TestFrameSocketCarriesFrames(t *testing.T) {
	a, b := frameSocketPair(t)
	rec := &frameRecorder{ch: make(chan []byte, 16)}
	b.Attach(rec)
	if got := a.MTU(); got != 1500+header.EthernetMinimumSize {
		t.Errorf("MTU %d, want the IP MTU plus the Ethernet header", got)
	}
	var sent [][]byte
	for i := range 5 {
		sent = append(sent, bytes.Repeat([]byte{byte(i)}, 60+i*300))
	}
	if n, err := writeFrame(a, sent...); n != len(sent) || err != nil {
		t.Fatalf("WritePackets: %d, %v", n, err)
	}
	for i, want := range sent {
		select {
		case got := <-rec.ch:
			if !bytes.Equal(got, want) {
				t.Errorf("frame %d: %d bytes of %x, want %d of %x", i, len(got), got[0], len(want), want[0])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("frame %d never arrived", i)
		}
	}
}

// Messages that cannot be frames are counted and dropped; the link goes on.
func TestFrameSocketMalformed(t *testing.T) {
	fds, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewFrameSocket(fds[1], 1500, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	defer unix.Close(fds[0])
	rec := &frameRecorder{ch: make(chan []byte, 4)}
	b.Attach(rec)
	for _, m := range [][]byte{{1, 2, 3}, make(header.Ethernet, 1500+header.EthernetMinimumSize+1), make([]byte, 64)} {
		if _, err := unix.Write(fds[0], m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case got := <-rec.ch:
		if len(got) != 64 {
			t.Errorf("delivered a frame of %d bytes, want only the 64-byte one", len(got))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the good frame never arrived")
	}
	if got := b.Malformed.Load(); got != 2 {
		t.Errorf("Malformed %d, want 2 (too short, too long)", got)
	}
}

// When one end goes away the other sees it: its reader stops, and frames
// it writes are counted as dropped.
func TestFrameSocketPeerGone(t *testing.T) {
	a, b := frameSocketPair(t)
	a.Attach(&frameRecorder{ch: make(chan []byte, 1)})
	b.Close()
	testwait.For(t, "the reader to see the other end close", a.Down.Load)
	if n, err := writeFrame(a, make([]byte, 60)); n != 0 || err == nil {
		t.Errorf("writing to a closed peer: %d, %v; want an error", n, err)
	}
	if got := a.Dropped.Load(); got != 1 {
		t.Errorf("Dropped %d, want 1", got)
	}
}
