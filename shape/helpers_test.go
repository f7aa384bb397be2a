package shape

import (
	"encoding/binary"
	"flag"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/refs"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestMain turns on netstack's reference leak checking, which panics at
// the end if a packet buffer was not released. Benchmarks run without it:
// it serialises every packet allocation on one lock.
func TestMain(m *testing.M) {
	flag.Parse()
	if flag.Lookup("test.bench").Value.String() == "" {
		refs.SetLeakMode(refs.LeaksPanic)
	}
	code := m.Run()
	if code == 0 {
		refs.DoLeakCheck()
	}
	os.Exit(code)
}

// delivery is one packet seen leaving the endpoint, and when.
type delivery struct {
	at   tcpip.MonotonicTime
	id   uint64
	data []byte
	caps stack.LinkEndpointCapabilities // the endpoint's, at delivery (ingress)
}

// recorder collects deliveries with the clock's time.
type recorder struct {
	clock tcpip.Clock
	ep    *Endpoint // for Capabilities at delivery, if set
	mu    sync.Mutex
	got   []delivery
}

func (r *recorder) record(pkt *stack.PacketBuffer) {
	b := pkt.ToBuffer()
	data := b.Flatten()
	b.Release()
	d := delivery{at: r.clock.NowMonotonic(), data: data}
	if len(data) >= 8 {
		d.id = binary.BigEndian.Uint64(data)
	}
	if r.ep != nil {
		d.caps = r.ep.Capabilities()
	}
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
}

func (r *recorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// DeliverNetworkPacket makes a recorder the stack above an Endpoint.
func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.record(pkt)
}

func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// fakeLower is the endpoint under an Endpoint: it records what is written
// and lets the test deliver packets up.
type fakeLower struct {
	recorder
	caps       stack.LinkEndpointCapabilities
	gso        stack.SupportedGSO
	dispatcher stack.NetworkDispatcher
	closed     atomic.Bool
	refuse     atomic.Bool // WritePackets takes nothing
}

var _ stack.LinkEndpoint = (*fakeLower)(nil)
var _ stack.GSOEndpoint = (*fakeLower)(nil)

func (f *fakeLower) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if f.closed.Load() || f.refuse.Load() {
		return 0, &tcpip.ErrClosedForSend{}
	}
	for _, p := range pkts.AsSlice() {
		f.record(p)
	}
	return pkts.Len(), nil
}

func (f *fakeLower) Attach(d stack.NetworkDispatcher)             { f.dispatcher = d }
func (f *fakeLower) IsAttached() bool                             { return f.dispatcher != nil }
func (f *fakeLower) MTU() uint32                                  { return 1500 }
func (f *fakeLower) SetMTU(uint32)                                {}
func (f *fakeLower) Capabilities() stack.LinkEndpointCapabilities { return f.caps }
func (f *fakeLower) MaxHeaderLength() uint16                      { return 0 }
func (f *fakeLower) LinkAddress() tcpip.LinkAddress               { return "" }
func (f *fakeLower) SetLinkAddress(tcpip.LinkAddress)             {}
func (f *fakeLower) Wait()                                        {}
func (f *fakeLower) ARPHardwareType() header.ARPHardwareType      { return header.ARPHardwareNone }
func (f *fakeLower) AddHeader(*stack.PacketBuffer)                {}
func (f *fakeLower) ParseHeader(*stack.PacketBuffer) bool         { return true }
func (f *fakeLower) Close()                                       { f.closed.Store(true) }
func (f *fakeLower) SetOnCloseAction(func())                      {}
func (f *fakeLower) GSOMaxSize() uint32 {
	if f.gso == stack.GSONotSupported {
		return 0
	}
	return 1 << 16
}
func (f *fakeLower) SupportedGSO() stack.SupportedGSO { return f.gso }

// packets makes test packets and counts their release.
type packets struct {
	made, released atomic.Int64
}

// make returns a packet of payload(id, size).
func (p *packets) make(id uint64, size int) *stack.PacketBuffer {
	p.made.Add(1)
	return stack.NewPacketBuffer(stack.PacketBufferOptions{
		Payload:   buffer.MakeWithData(payload(id, size)),
		OnRelease: func() { p.released.Add(1) },
	})
}

// payload is size bytes (at least 8) starting with id.
func payload(id uint64, size int) []byte {
	data := make([]byte, size)
	binary.BigEndian.PutUint64(data, id)
	for i := 8; i < size; i++ {
		data[i] = byte(id) + byte(i)
	}
	return data
}

// checkReleased fails the test unless every packet made was released.
func (p *packets) checkReleased(t *testing.T) {
	t.Helper()
	if m, r := p.made.Load(), p.released.Load(); m != r {
		t.Errorf("%d packets made, %d released", m, r)
	}
}

// send writes packets through e as a stack does, releasing its own
// references afterwards.
func send(t testing.TB, e *Endpoint, pkts ...*stack.PacketBuffer) {
	t.Helper()
	var l stack.PacketBufferList
	for _, p := range pkts {
		l.PushBack(p)
	}
	n, err := e.WritePackets(l)
	if err != nil || n != len(pkts) {
		t.Fatalf("WritePackets = %d, %v; want %d", n, err, len(pkts))
	}
	for _, p := range pkts {
		p.DecRef()
	}
}

// receive delivers packets into e as a lower endpoint does.
func receive(e *Endpoint, pkts ...*stack.PacketBuffer) {
	for _, p := range pkts {
		e.DeliverNetworkPacket(header.IPv4ProtocolNumber, p)
		p.DecRef()
	}
}

func mustParse(t testing.TB, s string) Spec {
	t.Helper()
	spec, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return spec
}

// progress is how many bytes had arrived by a time.
type progress struct {
	at    time.Duration
	bytes int
}

// rateOf estimates a rate in bit/s from progress samples in a way a few
// late samples (a descheduled goroutine on a busy machine) do not sway:
// the median of the rates between each sample and the one half the run
// later.
func rateOf(p []progress) float64 {
	h := len(p) / 2
	var rates []float64
	for i := 0; i+h < len(p); i++ {
		if dt := p[i+h].at - p[i].at; dt > 0 {
			rates = append(rates, float64(p[i+h].bytes-p[i].bytes)*8/dt.Seconds())
		}
	}
	if len(rates) == 0 {
		return 0
	}
	slices.Sort(rates)
	return rates[len(rates)/2]
}
