package mutate

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack/internal/testwait"
)

// ack is an ACK the local stack sends to the remote one.
func ack(n uint32) []byte {
	return tcpFrame(segment{src: addrLocal, dst: addrRemote, sport: 40000, dport: 80, seq: 500, ack: n, flags: header.TCPFlagAck, window: 512})
}

// data is a segment the remote stack sends, of n bytes at seq.
func data(seq uint32, n int, flags header.TCPFlags) []byte {
	return tcpFrame(segment{src: addrRemote, dst: addrLocal, sport: 80, dport: 40000, seq: seq, ack: 500, flags: flags | header.TCPFlagAck, window: 512, payload: make([]byte, n)})
}

// acks reads back the ack numbers of frames, checking each is a valid
// pure ACK of the connection.
func acks(t *testing.T, frames [][]byte) []uint32 {
	t.Helper()
	var out []uint32
	for _, b := range frames {
		p := readBack(t, b)
		if !p.checksumOK {
			t.Errorf("checksum invalid after mutation: % x", b)
		}
		if p.f.flags != uint8(header.TCPFlagAck) || p.f.payloadLen() != 0 || p.f.sport != 40000 || p.f.dport != 80 {
			t.Errorf("not a pure ACK of the connection: flags %#x payload %d ports %d>%d", p.f.flags, p.f.payloadLen(), p.f.sport, p.f.dport)
		}
		out = append(out, p.f.ack)
	}
	return out
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMisbehaviours(t *testing.T) {
	for _, tc := range []struct {
		rule string
		// Frames received before the new ACK (payload lengths), and what
		// the ACK of 1000+2896 becomes.
		received []int
		want     []uint32
		injected uint64
	}{
		{"ack-division=4", nil, []uint32{1724, 2448, 3172, 3896}, 3},
		{"ack-division 2", nil, []uint32{2448, 3896}, 1},
		{"dupack=3", nil, []uint32{3896, 3896, 3896, 3896}, 3},
		{"optimistic-ack=2", []int{1448, 1448}, []uint32{3896, 3896 + 1448, 3896 + 2*1448}, 2},
		// Without data received there is no segment size to run ahead by.
		{"optimistic-ack=2", nil, []uint32{3896}, 0},
		{"ack-division=4 prob 0%", nil, []uint32{3896}, 0},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			r := newRig(t, tc.rule)
			// The first ACK of a connection (the handshake's) is only noted.
			if got := acks(t, r.send(t, ack(1000))); !equalU32(got, []uint32{1000}) {
				t.Fatalf("first ACK became %v, want it untouched", got)
			}
			seq := uint32(1000)
			for _, n := range tc.received {
				r.receive(data(seq, n, 0))
				seq += uint32(n)
			}
			if got := acks(t, r.send(t, ack(3896))); !equalU32(got, tc.want) {
				t.Errorf("ACK of 3896 became %v, want %v", got, tc.want)
			}
			// A duplicate ACK acknowledges nothing new: untouched.
			dup := r.send(t, ack(3896))
			if len(dup) != 1 || !bytes.Equal(dup[0], ack(3896)) {
				t.Errorf("duplicate ACK became %d frames", len(dup))
			}
			st := r.ep.Stats().Rules[0]
			if st.Matched != 3 || st.Injected != tc.injected {
				t.Errorf("counters %+v, want matched 3 injected %d", st, tc.injected)
			}
			if len(r.up.got()) != len(tc.received) {
				t.Errorf("%d frames delivered up, want %d", len(r.up.got()), len(tc.received))
			}
		})
	}
}

// TestOptimisticAckStopsAtFIN: once the peer's FIN arrived, ACKs are true
// again, so the connection can close.
func TestOptimisticAckStopsAtFIN(t *testing.T) {
	r := newRig(t, "optimistic-ack=4")
	r.send(t, ack(1000))
	r.receive(data(1000, 1000, 0))
	if got := acks(t, r.send(t, ack(2000))); !equalU32(got, []uint32{2000, 3000, 4000, 5000, 6000}) {
		t.Fatalf("ACK of 2000 became %v, want it and 4 ACKs a segment apart beyond", got)
	}
	r.receive(data(2000, 1000, header.TCPFlagFin))
	if got := acks(t, r.send(t, ack(3001))); !equalU32(got, []uint32{3001}) {
		t.Errorf("ACK after FIN became %v, want 3001", got)
	}
}

func TestGeneralRules(t *testing.T) {
	syn := tcpFrame(segment{src: addrLocal, dst: addrRemote, sport: 40000, dport: 80, seq: 1, flags: header.TCPFlagSyn, window: 512})
	synAck := tcpFrame(segment{src: addrLocal, dst: addrRemote, sport: 80, dport: 40000, seq: 1, ack: 9, flags: header.TCPFlagSyn | header.TCPFlagAck, window: 512})
	six := tcpFrame(segment{src: addrLocal6, dst: addrRem6, sport: 40000, dport: 443, seq: 1, ack: 1, flags: header.TCPFlagAck | header.TCPFlagPsh, window: 512, payload: []byte("hello")})
	for _, tc := range []struct {
		rule    string
		in      []byte
		n       int // frames on the wire
		check   func(t *testing.T, p readFrame)
		matched uint64
	}{
		{"drop tcp dport 80 flags S prob 100%", syn, 0, nil, 1},
		{"drop tcp flags S/SA", synAck, 1, nil, 0},
		{"drop dst 10.0.8.0/24", syn, 1, nil, 0},
		{"drop tcp src 10.0.9.0/24 port 80", synAck, 0, nil, 1},
		{"drop udp", syn, 1, nil, 0},
		{"drop tcp seq 0-10", syn, 0, nil, 1},
		{"drop tcp seq 2-10", syn, 1, nil, 0},
		{"duplicate 2", syn, 3, nil, 1},
		{"rewrite ttl=1 window=7", syn, 1, func(t *testing.T, p readFrame) {
			if p.ttl != 1 || p.window != 7 {
				t.Errorf("ttl %d window %d, want 1 and 7", p.ttl, p.window)
			}
		}, 1},
		{"rewrite tos=184", syn, 1, func(t *testing.T, p readFrame) {
			if tos, _ := header.IPv4(p.f.b[p.f.ipOff:]).TOS(); tos != 184 {
				t.Errorf("tos %d, want 184", tos)
			}
		}, 1},
		{"rewrite syn=0 rst=1", syn, 1, func(t *testing.T, p readFrame) {
			if p.f.flags != uint8(header.TCPFlagRst) {
				t.Errorf("flags %#x, want RST alone", p.f.flags)
			}
		}, 1},
		{"tcp dst fd09::/64 rewrite ttl=3 window=9 psh=0", six, 1, func(t *testing.T, p readFrame) {
			if p.ttl != 3 || p.window != 9 || p.f.flags != uint8(header.TCPFlagAck) || p.f.payloadLen() != 5 {
				t.Errorf("hop limit %d window %d flags %#x payload %d", p.ttl, p.window, p.f.flags, p.f.payloadLen())
			}
		}, 1},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			r := newRig(t, tc.rule)
			out := r.send(t, tc.in)
			if len(out) != tc.n {
				t.Fatalf("%d frames on the wire, want %d", len(out), tc.n)
			}
			for _, b := range out {
				p := readBack(t, b)
				if !p.checksumOK {
					t.Errorf("checksum invalid: % x", b)
				}
				if tc.check != nil {
					tc.check(t, p)
				} else if !bytes.Equal(b, tc.in) {
					t.Errorf("frame changed by %q", tc.rule)
				}
			}
			if st := r.ep.Stats().Rules[0]; st.Matched != tc.matched {
				t.Errorf("matched %d, want %d", st.Matched, tc.matched)
			}
		})
	}
}

// A rewritten window is in bytes: scaled by its sender's window scale when
// both SYNs offered one (RFC 7323), never on a SYN, and written as is when
// the mutator did not see the handshake.
func TestWindowRewriteScaled(t *testing.T) {
	wscale := func(shift byte) []byte { return []byte{header.TCPOptionNOP, header.TCPOptionWS, 3, shift} }
	syn := func(shift []byte) []byte {
		return tcpFrame(segment{src: addrLocal, dst: addrRemote, sport: 40000, dport: 80, seq: 1, flags: header.TCPFlagSyn, window: 512, options: shift})
	}
	synAck := func(shift []byte) []byte {
		return tcpFrame(segment{src: addrRemote, dst: addrLocal, sport: 80, dport: 40000, seq: 100, ack: 2, flags: header.TCPFlagSyn | header.TCPFlagAck, window: 512, options: shift})
	}
	ackOut := tcpFrame(segment{src: addrLocal, dst: addrRemote, sport: 40000, dport: 80, seq: 2, ack: 101, flags: header.TCPFlagAck, window: 512})
	ackIn := tcpFrame(segment{src: addrRemote, dst: addrLocal, sport: 80, dport: 40000, seq: 101, ack: 2, flags: header.TCPFlagAck, window: 512})
	for _, tc := range []struct {
		name              string
		localWS, remoteWS []byte // nil: not offered; no SYNs at all when both nil and handshake false
		handshake         bool
		wantSYN, wantOut  uint16 // windows of the SYN and of the next ACK out
		wantIn            uint16 // window of an ACK in, under an "in" rule
		outRule, inRule   string
		wantSYNChecked    bool
	}{
		{name: "both offered", localWS: wscale(7), remoteWS: wscale(2), handshake: true, wantSYN: 65535, wantOut: 65536 >> 7, wantIn: 65536 >> 2, wantSYNChecked: true},
		{name: "one offered", localWS: wscale(7), handshake: true, wantSYN: 65535, wantOut: 65535, wantIn: 65535, wantSYNChecked: true},
		{name: "no handshake seen", wantOut: 65535, wantIn: 65535},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "tcp rewrite window=65536", "in tcp rewrite window=65536")
			if tc.handshake {
				out := r.send(t, syn(tc.localWS))
				if p := readBack(t, out[0]); p.window != tc.wantSYN || !p.checksumOK {
					t.Errorf("SYN's window %d (checksum ok %v), want %d", p.window, p.checksumOK, tc.wantSYN)
				}
				r.receive(synAck(tc.remoteWS))
			}
			out := r.send(t, ackOut)
			if p := readBack(t, out[0]); p.window != tc.wantOut || !p.checksumOK {
				t.Errorf("ACK out: window %d (checksum ok %v), want %d", p.window, p.checksumOK, tc.wantOut)
			}
			r.receive(ackIn)
			up := r.up.got()
			if p := readBack(t, up[len(up)-1]); p.window != tc.wantIn || !p.checksumOK {
				t.Errorf("ACK in: window %d (checksum ok %v), want %d", p.window, p.checksumOK, tc.wantIn)
			}
		})
	}
}

func TestIngressDelayAndInject(t *testing.T) {
	t.Run("in drop", func(t *testing.T) {
		r := newRig(t, "in drop tcp sport 80")
		r.receive(data(1, 10, 0))
		r.receive(tcpFrame(segment{src: addrRemote, dst: addrLocal, sport: 81, dport: 40000, flags: header.TCPFlagAck}))
		if got := r.up.got(); len(got) != 1 || readBack(t, got[0]).f.sport != 81 {
			t.Errorf("delivered %d frames, want only the one from port 81", len(got))
		}
		// An egress frame is not the rule's.
		if out := r.send(t, data(1, 10, 0)); len(out) != 1 {
			t.Errorf("egress frame dropped by an in rule")
		}
	})
	t.Run("delay", func(t *testing.T) {
		r := newRig(t, "delay 30ms")
		if out := r.send(t, ack(5)); len(out) != 0 {
			t.Fatalf("delayed frame went at once")
		}
		testwait.For(t, "the delayed frame to reach the wire", func() bool { return r.wire.NumQueued() == 1 })
		if got := acks(t, r.drain()); !equalU32(got, []uint32{5}) {
			t.Errorf("delayed frame %v", got)
		}
	})
	t.Run("inject rst", func(t *testing.T) {
		r := newRig(t, "inject rst tcp dport 80")
		in := tcpFrame(segment{src: addrLocal, dst: addrRemote, sport: 40000, dport: 80, seq: 700, ack: 42, flags: header.TCPFlagAck, payload: make([]byte, 100)})
		out := r.send(t, in)
		if len(out) != 2 || !bytes.Equal(out[0], in) {
			t.Fatalf("%d frames on the wire, want the frame then a reset", len(out))
		}
		p := readBack(t, out[1])
		if !p.checksumOK || p.f.flags != uint8(header.TCPFlagRst) || p.f.seq != 800 || p.f.dst != addrRemote || p.f.dport != 80 {
			t.Errorf("reset to the receiver: %+v", p.f)
		}
		testwait.For(t, "the reset to the sender", func() bool { return len(r.up.got()) == 1 })
		p = readBack(t, r.up.got()[0])
		if !p.checksumOK || p.f.flags != uint8(header.TCPFlagRst) || p.f.seq != 42 || p.f.dst != addrLocal || p.f.dport != 40000 || p.f.src != addrRemote {
			t.Errorf("reset to the sender: %+v", p.f)
		}
	})
}

// TestNotIPAndMalformed: frames rules cannot read pass untouched; those
// claiming to be IP are counted.
func TestNotIPAndMalformed(t *testing.T) {
	r := newRig(t, "drop")
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	bad := ack(1)[:header.EthernetMinimumSize+10]
	out := r.send(t, arp, bad)
	if len(out) != 2 {
		t.Fatalf("%d frames passed, want both", len(out))
	}
	if st := r.ep.Stats(); st.Malformed != 1 || st.Rules[0].Matched != 0 {
		t.Errorf("stats %+v, want malformed 1 and nothing matched", st)
	}
}

// FuzzFrames: whatever bytes arrive or leave, the rules never panic, and
// every frame that is not dropped goes on.
func FuzzFrames(f *testing.F) {
	f.Add(ack(1000), false)
	f.Add(data(1, 100, header.TCPFlagFin), true)
	f.Add(tcpFrame(segment{src: addrLocal6, dst: addrRem6, sport: 1, dport: 2, flags: header.TCPFlagSyn}), false)
	f.Add([]byte{0, 1, 2}, true)
	f.Fuzz(func(t *testing.T, b []byte, in bool) {
		r := newRig(t, "ack-division=3", "dupack=2", "optimistic-ack=2", "rewrite ttl=1 window=5 syn=1", "in rewrite tos=4", "duplicate 1 prob 50%", "inject rst")
		if in {
			r.receive(b)
			return
		}
		r.send(t, b)
		r.send(t, b)
	})
}
