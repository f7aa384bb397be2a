package shape

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/internal/realtime"
	"github.com/ustack/ustack/internal/testwait"
	"github.com/ustack/ustack/link"
	"github.com/ustack/ustack/netstack"
)

var (
	addrA = tcpip.AddrFrom4([4]byte{10, 0, 9, 1})
	addrB = tcpip.AddrFrom4([4]byte{10, 0, 9, 2})
)

// twoStacks are two netstack stacks joined by ustack's in-memory pair,
// with an Endpoint (ep, nil when not wanted) wrapping a's end of it, under
// the Ethernet framing as a capture would be.
type twoStacks struct {
	a, b *stack.Stack
	ep   *Endpoint
}

func newTwoStacks(tb testing.TB, shaped bool, egress, ingress Spec) *twoStacks {
	tb.Helper()
	return newTwoStacksMTU(tb, 1500, shaped, egress, ingress)
}

func newTwoStacksMTU(tb testing.TB, mtu uint32, shaped bool, egress, ingress Spec) *twoStacks {
	tb.Helper()
	endA, endB := link.NewPair(mtu+header.EthernetMinimumSize,
		tcpip.LinkAddress([]byte{0x52, 0x54, 0, 0x12, 0x34, 0x0a}), tcpip.LinkAddress([]byte{0x52, 0x54, 0, 0x12, 0x34, 0x0b}))
	ts := &twoStacks{}
	tb.Cleanup(func() {
		for _, s := range []*stack.Stack{ts.a, ts.b} {
			if s != nil {
				s.Close()
				s.Wait()
				s.RemoveNIC(1) // closes its link endpoints
			}
		}
		// In case a NIC was never made; closing twice is harmless.
		if ts.ep != nil {
			ts.ep.Close()
		}
		endA.Close()
		endB.Close()
	})
	var lowerA stack.LinkEndpoint = endA
	if shaped {
		ep, err := New(endA, nil, egress, ingress)
		if err != nil {
			tb.Fatal(err)
		}
		ts.ep, lowerA = ep, ep
	}
	for _, s := range []struct {
		dst   **stack.Stack
		lower stack.LinkEndpoint
		addr  tcpip.Address
	}{{&ts.a, lowerA, addrA}, {&ts.b, endB, addrB}} {
		ns, err := netstack.New(netstack.TCPOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		*s.dst = ns
		if err := ns.CreateNIC(1, ethernet.New(s.lower)); err != nil {
			tb.Fatalf("CreateNIC: %s", err)
		}
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: s.addr, PrefixLen: 24}}
		if err := ns.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			tb.Fatalf("AddProtocolAddress: %s", err)
		}
		ns.SetRouteTable([]tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: 1}})
	}
	return ts
}

// transfer sends n bytes of seeded random data from a to b over one TCP
// connection and returns the goodput (payload bits per second) over the
// whole transfer, from dialling to the last byte, and in the steady
// state, once the first warm bytes have arrived (see rateOf). It fails
// the test unless b received exactly what a sent.
func (ts *twoStacks) transfer(tb testing.TB, n, warm int) (whole, steady float64) {
	tb.Helper()
	ln, err := gonet.ListenTCP(ts.b, tcpip.FullAddress{NIC: 1, Addr: addrB, Port: 5001}, ipv4.ProtocolNumber)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum  [32]byte
		n    int
		end  time.Time
		seen []progress // after warm
		err  error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		var r result
		defer func() { done <- r }()
		c, err := ln.Accept()
		if err != nil {
			r.err = err
			return
		}
		defer c.Close()
		h := sha256.New()
		buf := make([]byte, 64<<10)
		for {
			k, err := c.Read(buf)
			h.Write(buf[:k])
			r.n += k
			if r.n >= warm && k > 0 {
				r.seen = append(r.seen, progress{time.Since(start), r.n})
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.err = err
				return
			}
		}
		r.end = time.Now()
		copy(r.sum[:], h.Sum(nil))
	}()
	data := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(data)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, ts.a, tcpip.FullAddress{NIC: 1, Addr: addrB, Port: 5001}, ipv4.ProtocolNumber)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		tb.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		tb.Fatalf("receiver: %v after %d bytes", r.err, r.n)
	}
	if r.n != n || r.sum != sha256.Sum256(data) {
		tb.Fatalf("received %d bytes with SHA-256 %x, sent %d with %x", r.n, r.sum, n, sha256.Sum256(data))
	}
	whole = float64(n*8) / r.end.Sub(start).Seconds()
	return whole, rateOf(r.seen)
}

// udpRTTs times count UDP echoes of size bytes from a to b, one at a time.
func (ts *twoStacks) udpRTTs(tb testing.TB, count, size int) []time.Duration {
	tb.Helper()
	srv, err := gonet.DialUDP(ts.b, &tcpip.FullAddress{NIC: 1, Addr: addrB, Port: 7}, nil, ipv4.ProtocolNumber)
	if err != nil {
		tb.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo(buf[:n], from)
		}
	}()
	c, err := gonet.DialUDP(ts.a, nil, &tcpip.FullAddress{NIC: 1, Addr: addrB, Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	return echoes(tb, count, size, c)
}

// echoes times count request-reply exchanges of size bytes on c.
func echoes(tb testing.TB, count, size int, c net.Conn) []time.Duration {
	tb.Helper()
	msg, reply := make([]byte, size), make([]byte, 2048)
	var rtts []time.Duration
	for i := range count {
		msg[0] = byte(i)
		start := time.Now()
		c.SetReadDeadline(start.Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			tb.Fatal(err)
		}
		n, err := c.Read(reply)
		if err != nil {
			tb.Fatalf("echo %d: %v", i, err)
		}
		if !bytes.Equal(reply[:n], msg) {
			tb.Fatalf("echo %d came back different", i)
		}
		rtts = append(rtts, time.Since(start))
	}
	return rtts
}

// icmpRTTs times count ICMP echoes (pings) from a to b, one at a time,
// each with size bytes of data.
func (ts *twoStacks) icmpRTTs(tb testing.TB, count, size int) []time.Duration {
	tb.Helper()
	var wq waiter.Queue
	ep, terr := ts.a.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		tb.Fatalf("ICMP endpoint: %s", terr)
	}
	defer ep.Close()
	if terr := ep.Connect(tcpip.FullAddress{NIC: 1, Addr: addrB}); terr != nil {
		tb.Fatalf("Connect: %s", terr)
	}
	we, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	req := make([]byte, header.ICMPv4MinimumSize+size)
	var rtts []time.Duration
	for i := range count {
		icmpHdr := header.ICMPv4(req)
		icmpHdr.SetType(header.ICMPv4Echo)
		icmpHdr.SetSequence(uint16(i))
		start := time.Now()
		var r bytes.Reader
		r.Reset(req)
		if _, terr := ep.Write(&r, tcpip.WriteOptions{}); terr != nil {
			tb.Fatalf("ping %d: %s", i, terr)
		}
		for {
			var out bytes.Buffer
			res, terr := ep.Read(&out, tcpip.ReadOptions{})
			if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					tb.Fatalf("ping %d: no reply in 5s", i)
				}
				continue
			}
			if terr != nil {
				tb.Fatalf("ping %d: %s", i, terr)
			}
			reply := header.ICMPv4(out.Bytes()[:res.Count])
			if reply.Type() == header.ICMPv4EchoReply && reply.Sequence() == uint16(i) {
				break
			}
		}
		rtts = append(rtts, time.Since(start))
	}
	return rtts
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestEmulatedLink runs real stacks over a link of 10 Mbit/s and 25 ms
// each way, the wrapper on one side shaping both directions: a TCP bulk
// transfer must reach 9.2 to 10.0 Mbit/s of goodput once past slow start,
// and a ping 50 to 52 ms of round trip (the upper bounds are not held
// under the race detector, which slows the stacks several times over). It
// runs in real time, a few seconds; any machine sustains 10 Mbit/s.
func TestEmulatedLink(t *testing.T) {
	if testing.Short() {
		t.Skip("runs in real time for a few seconds")
	}
	// The delay line's timers must fire on time however busy the machine
	// is: that is the emulator's accuracy, the test's subject.
	realtime.Raise(t)
	// The default queue (1000 packets) holds the whole receive window,
	// so nothing is lost and the measure is the link's.
	// The same two stacks without emulation first: what the stacks and
	// the machine take themselves, measured beside it, is not the link's.
	bare := newTwoStacks(t, true, Spec{}, Spec{})
	own := map[string]time.Duration{
		"ICMP echo, 56 bytes": median(bare.icmpRTTs(t, 20, 56)),
		"UDP echo, 64 bytes":  median(bare.udpRTTs(t, 20, 64)),
	}
	spec := mustParse(t, "rate 10mbit delay 25ms")
	ts := newTwoStacks(t, true, spec, spec)

	for _, p := range []struct {
		name string
		rtts []time.Duration
	}{
		{"ICMP echo, 56 bytes", ts.icmpRTTs(t, 20, 56)},
		{"UDP echo, 64 bytes", ts.udpRTTs(t, 20, 64)},
	} {
		med, lo := median(p.rtts), slices.Min(p.rtts)
		t.Logf("%s: RTT median %v, min %v, max %v; without the emulator %v", p.name, med, lo, slices.Max(p.rtts), own[p.name])
		// Never faster than the link: 2 × (25ms + serialisation).
		if lo < 50*time.Millisecond {
			t.Errorf("%s: RTT %v, below the 50ms the link allows", p.name, lo)
		}
		// The link's share of the round trip: 50 to 52 ms.
		med -= own[p.name]
		if med > 52*time.Millisecond && !raceEnabled {
			t.Errorf("%s: the link adds %v to the median RTT, want at most 52ms", p.name, med)
		}
	}

	const n, warm = 4 << 20, 512 << 10
	whole, steady := ts.transfer(t, n, warm)
	eg, in := ts.ep.Stats(Egress), ts.ep.Stats(Ingress)
	t.Logf("TCP %d MiB: %.2f Mbit/s over the whole transfer, %.2f Mbit/s after the first %d KiB", n>>20, whole/1e6, steady/1e6, warm>>10)
	t.Logf("%s\n%s", eg, in)
	if steady > 10e6 {
		t.Errorf("steady goodput %.3f Mbit/s, above the link's 10", steady/1e6)
	}
	// The race detector slows the stacks themselves several times over;
	// the emulator's accuracy is measured without it.
	if steady < 9.2e6 && !raceEnabled {
		t.Errorf("steady goodput %.3f Mbit/s, want 9.2 to 10.0", steady/1e6)
	}
	if eg.SentBytes == 0 || eg.Errors != 0 {
		t.Errorf("egress stats %+v", eg)
	}
}

// TestEmulatedLoss checks 1% loss end to end: the transfer completes
// intact and the wrapper lost about 1% of what the stack sent.
func TestEmulatedLoss(t *testing.T) {
	ts := newTwoStacks(t, true, mustParse(t, "loss 1% seed 11"), mustParse(t, "loss 1% seed 12"))
	ts.transfer(t, 16<<20, 0)
	for _, d := range []Direction{Egress, Ingress} {
		st := ts.ep.Stats(d)
		total := st.SentPackets + st.DroppedLoss
		f := float64(st.DroppedLoss) / float64(total)
		t.Logf("%s: %d of %d packets lost (%.2f%%)", d, st.DroppedLoss, total, f*100)
		if total < 2000 || f < 0.005 || f > 0.016 {
			t.Errorf("%s: %d of %d lost, want about 1%%", d, st.DroppedLoss, total)
		}
	}
}

// TestEmulatedCorruption checks that a corrupted packet is caught by a
// checksum, as on a wire: the transfer arrives intact.
func TestEmulatedCorruption(t *testing.T) {
	ts := newTwoStacks(t, true, mustParse(t, "corrupt 2% seed 3"), mustParse(t, "corrupt 2% seed 4"))
	ts.transfer(t, 4<<20, 0)
	eg, in := ts.ep.Stats(Egress), ts.ep.Stats(Ingress)
	if eg.Corrupted == 0 || in.Corrupted == 0 {
		t.Errorf("nothing corrupted: egress %d, ingress %d", eg.Corrupted, in.Corrupted)
	}
	// Corrupted frames the receivers dropped show as checksum errors or
	// malformed packets in their counters.
	bad := func(s *stack.Stack) uint64 {
		st := s.Stats()
		return st.TCP.ChecksumErrors.Value() + st.IP.MalformedPacketsReceived.Value() + st.TCP.InvalidSegmentsReceived.Value()
	}
	t.Logf("corrupted %d sent, %d received; receivers counted %d and %d bad", eg.Corrupted, in.Corrupted, bad(ts.b), bad(ts.a))
	if bad(ts.b) == 0 || bad(ts.a) == 0 {
		t.Error("corrupted packets were not caught by the receiving stacks")
	}
}

// TestLiveChangeOnRunningStack sets a spec while a connection runs: the
// transfer completes intact and later echoes see the new delay.
func TestLiveChangeOnRunningStack(t *testing.T) {
	ts := newTwoStacks(t, true, Spec{}, Spec{})
	if rtt := median(ts.udpRTTs(t, 5, 64)); rtt > 20*time.Millisecond {
		t.Fatalf("RTT %v before any delay", rtt)
	}
	set := make(chan error, 1)
	go func() {
		err := testwait.Until(t.Context(), "the transfer to be under way (500 packets sent)", func() error {
			if n := ts.ep.Stats(Egress).SentPackets; n < 500 {
				return fmt.Errorf("%d packets sent", n)
			}
			return nil
		})
		if err == nil {
			err = ts.ep.Set(Egress, mustParse(t, "rate 100mbit delay 10ms"))
		}
		set <- err
	}()
	ts.transfer(t, 8<<20, 0)
	if err := <-set; err != nil {
		t.Fatal(err)
	}
	if rtt := median(ts.udpRTTs(t, 5, 64)); rtt < 10*time.Millisecond {
		t.Errorf("RTT %v after setting 10ms of delay", rtt)
	}
}
