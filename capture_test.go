package ustack_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/internal/testprog"
)

// TestCapture runs a short TCP exchange between two stacks of a pair, each
// capturing to its own file, and reads the files back: LINKTYPE_ETHERNET
// with the handshake, the data and the FINs in them.
func TestCapture(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", addrB4}, {"tcp6", addrB6}} {
		t.Run(tc.network, func(t *testing.T) {
			dir := t.TempDir()
			files := [2]string{filepath.Join(dir, "a.pcap"), filepath.Join(dir, "b.pcap")}
			var cfgs [2]ustack.Config
			for i, name := range files {
				f, err := os.Create(name)
				if err != nil {
					t.Fatal(err)
				}
				cfgs[i].Pcap = f // the stack closes it
			}
			a, b, err := ustack.NewPair(cfgs[0], cfgs[1])
			if err != nil {
				t.Fatal(err)
			}
			const request, reply = "captured request", "captured reply"
			ln, err := b.Listen(tc.network, net.JoinHostPort(tc.addr, "0"))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				s, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer s.Close()
				got, err := io.ReadAll(s)
				if err == nil && string(got) != request {
					err = io.ErrUnexpectedEOF
				}
				if err == nil {
					_, err = s.Write([]byte(reply))
				}
				done <- err
			}()
			c, err := a.Dial(tc.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte(request))
			c.(closeWriter).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != reply {
				t.Fatalf("client read %q, %v", got, err)
			}
			if err := <-done; err != nil {
				t.Fatalf("server: %v", err)
			}
			c.Close()
			ln.Close()
			if err := a.Close(); err != nil {
				t.Errorf("closing a: %v", err)
			}
			if err := b.Close(); err != nil {
				t.Errorf("closing b: %v", err)
			}
			for _, name := range files {
				checkCapture(t, name, request, reply)
			}
			t.Run("tshark", func(t *testing.T) {
				for _, name := range files {
					tsharkReads(t, name)
				}
			})
		})
	}
}

// checkCapture parses a pcap file and checks it holds a whole TCP exchange.
func checkCapture(t *testing.T, name, request, reply string) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: not a pcap file: %v", name, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("%s: link type %v, want Ethernet", name, r.LinkType())
	}
	// Counted per sending port, so a retransmitted FIN (scheduling jitter
	// can trigger one) is still one FIN.
	syns, synAcks, fins := map[layers.TCPPort]bool{}, map[layers.TCPPort]bool{}, map[layers.TCPPort]bool{}
	var frames int
	var data []string
	for {
		frame, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: frame %d: %v", name, frames+1, err)
		}
		frames++
		if ci.CaptureLength != ci.Length || ci.Timestamp.IsZero() {
			t.Errorf("%s: frame %d: captured %d of %d bytes at %v", name, frames, ci.CaptureLength, ci.Length, ci.Timestamp)
		}
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Errorf("%s: frame %d does not decode: %v", name, frames, el.Error())
			continue
		}
		tl, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			continue // ARP, neighbour discovery
		}
		switch {
		case tl.SYN && !tl.ACK:
			syns[tl.SrcPort] = true
		case tl.SYN && tl.ACK:
			synAcks[tl.SrcPort] = true
		}
		if tl.FIN {
			fins[tl.SrcPort] = true
		}
		if len(tl.Payload) > 0 {
			data = append(data, string(tl.Payload))
		}
	}
	all := strings.Join(data, "|")
	syn, synAck, fin := len(syns), len(synAcks), len(fins)
	if syn != 1 || synAck != 1 || fin != 2 || !strings.Contains(all, request) || !strings.Contains(all, reply) {
		t.Errorf("%s: %d frames with SYN from %d, SYN-ACK from %d, FIN from %d ports, data %q; want 1, 1, 2 and both messages", name, frames, syn, synAck, fin, all)
	}
}

// tsharkReads checks that Wireshark's reader accepts the file.
func tsharkReads(t *testing.T, name string) {
	t.Helper()
	tshark := testprog.Need(t, "tshark")
	out, err := exec.Command(tshark, "-r", name).CombinedOutput()
	if err != nil {
		t.Errorf("tshark -r %s: %v\n%s", name, err, out)
		return
	}
	if !bytes.Contains(out, []byte("[SYN]")) || !bytes.Contains(out, []byte("[SYN, ACK]")) || !bytes.Contains(out, []byte("FIN")) {
		t.Errorf("tshark -r %s shows no SYN, SYN-ACK or FIN:\n%s", name, out)
	}
}
