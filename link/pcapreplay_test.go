package link

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// replayRecorder is a dispatcher that keeps a copy of each delivered frame.
type replayRecorder struct {
	mu     sync.Mutex
	frames [][]byte
}

func (r *replayRecorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	b := pkt.ToBuffer()
	r.mu.Lock()
	r.frames = append(r.frames, b.Flatten())
	r.mu.Unlock()
	b.Release()
}
func (r *replayRecorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestReplayLinkTypes writes captures of each link type the replay reads,
// each with one well-formed and one malformed record, and checks the
// Ethernet frames delivered and the skip count.
func TestReplayLinkTypes(t *testing.T) {
	own := tcpip.LinkAddress("\x02\x00\x00\x00\x00\xaa")
	peer := tcpip.LinkAddress("\x02\x00\x00\x00\x00\xbb")
	other := tcpip.LinkAddress("\x02\x00\x00\x00\x00\xcc")
	ipv4 := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	eth := func(dst, src tcpip.LinkAddress, payload []byte) []byte {
		f := make([]byte, header.EthernetMinimumSize+len(payload))
		header.Ethernet(f).Encode(&header.EthernetFields{DstAddr: dst, SrcAddr: src, Type: header.IPv4ProtocolNumber})
		copy(f[header.EthernetMinimumSize:], payload)
		return f
	}
	sll := make([]byte, 16, 16+len(ipv4))
	sll[1] = 4 // outgoing, as tcpdump -i any sees a sender's own packets
	sll[3] = 1 // ARPHRD_ETHER
	sll[5] = 6
	copy(sll[6:], peer)
	sll[14], sll[15] = 0x08, 0x00
	sll = append(sll, ipv4...)
	for _, tc := range []struct {
		name     string
		linkType layers.LinkType
		records  [][]byte
		keepMAC  bool
		want     []byte
	}{
		{"ethernet", layers.LinkTypeEthernet, [][]byte{eth(other, peer, ipv4), {1, 2, 3}}, false, eth(own, peer, ipv4)},
		{"ethernet mac=keep", layers.LinkTypeEthernet, [][]byte{eth(other, peer, ipv4), {1, 2, 3}}, true, eth(other, peer, ipv4)},
		{"linux cooked", layers.LinkTypeLinuxSLL, [][]byte{sll, sll[:10]}, false, eth(own, peer, ipv4)},
		{"raw ip", layers.LinkTypeRaw, [][]byte{ipv4, {0x00, 1, 2}}, false, eth(own, "\x02\x00\x00\x00\x00\x01", ipv4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.pcap")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w := pcapgo.NewWriter(f)
			if err := w.WriteFileHeader(65535, tc.linkType); err != nil {
				t.Fatal(err)
			}
			for i, rec := range tc.records {
				ci := gopacket.CaptureInfo{Timestamp: time.Unix(1000, int64(i)*1000), CaptureLength: len(rec), Length: len(rec)}
				if err := w.WritePacket(ci, rec); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			var out bytes.Buffer
			pw, err := NewPcapWriter(&out)
			if err != nil {
				t.Fatal(err)
			}
			ep, err := OpenReplay(path, 1500, own, ReplayOptions{Speed: 1, KeepMAC: tc.keepMAC, Out: pw})
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			var rec replayRecorder
			ep.Attach(&rec)
			ep.Start()
			<-ep.Finished()
			if got, skipped := ep.Source().Replayed.Load(), ep.Source().Skipped.Load(); got != 1 || skipped != 1 {
				t.Errorf("replayed %d, skipped %d; want 1 and 1", got, skipped)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.frames) != 1 || !bytes.Equal(rec.frames[0], tc.want) {
				t.Errorf("delivered %x, want one frame %x", rec.frames, tc.want)
			}
		})
	}
}

func TestOpenReplayRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("not a capture at all\n"), 0o644)
	if _, err := OpenReplay(text, 1500, "", ReplayOptions{}); err == nil {
		t.Error("a text file opened as a capture")
	}
	if _, err := OpenReplay(filepath.Join(dir, "missing"), 1500, "", ReplayOptions{}); !os.IsNotExist(err) {
		t.Errorf("missing file: %v, want not-exist", err)
	}
}

// A ReplaySource hands its frames to any receiver; frames longer than
// MaxFrame are skipped and counted, and a receiver that is gone ends the
// run.
func TestReplaySourceRun(t *testing.T) {
	own := tcpip.LinkAddress("\x02\x00\x00\x00\x00\xaa")
	frame := func(n int) []byte {
		f := make([]byte, n)
		header.Ethernet(f).Encode(&header.EthernetFields{DstAddr: own, SrcAddr: "\x02\x00\x00\x00\x00\xbb", Type: header.IPv4ProtocolNumber})
		return f
	}
	path := filepath.Join(t.TempDir(), "in.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for i, n := range []int{60, 1514, 1515, 9014, 100} {
		rec := frame(n)
		w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1000, int64(i)), CaptureLength: n, Length: n}, rec)
	}
	f.Close()
	for _, c := range []struct {
		name              string
		stopAfter         int // deliver refuses the frame after this many; 0: never
		sizes             []int
		replayed, skipped uint64
	}{
		{"to the end", 0, []int{60, 1514, 100}, 3, 2},
		{"receiver gone", 2, []int{60, 1514}, 2, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, err := OpenReplaySource(path, own, ReplayOptions{Speed: 0, MaxFrame: 1514})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var sizes []int
			src.Run(make(chan struct{}), func(frame []byte) bool {
				if c.stopAfter > 0 && len(sizes) == c.stopAfter {
					return false
				}
				sizes = append(sizes, len(frame))
				return true
			})
			if fmt.Sprint(sizes) != fmt.Sprint(c.sizes) || src.Replayed.Load() != c.replayed || src.Skipped.Load() != c.skipped {
				t.Errorf("frames of %v, %d replayed, %d skipped; want %v, %d, %d", sizes, src.Replayed.Load(), src.Skipped.Load(), c.sizes, c.replayed, c.skipped)
			}
		})
	}
}
