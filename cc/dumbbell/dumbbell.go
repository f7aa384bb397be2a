// Package dumbbell runs bulk TCP flows, each with its own congestion
// control, through one emulated bottleneck between two in-process stacks
// and measures them: goodput, the bottleneck's queueing delay,
// retransmissions, fairness, and traces of each flow's window and the
// queue. It is the testbed of package cc's behaviour tests and of the
// comparison report (cc/report).
//
// The two stacks are a ustack pair (real netstack on both ends). The
// sender's egress is the bottleneck: Rate, a drop-tail queue of Buffer
// packets, random Loss and half the base RTT of delay; its ingress (the
// ACK path) has the other half of the delay and no rate. Every flow goes
// from the sender's stack to the receiver's, so they share the queue.
//
// Runs take real time (Warmup + Duration): the link emulator releases
// packets on the wall clock. Queueing delays come from the emulator's own
// schedule (shape.Sojourn), so they do not grow when the machine is busy;
// goodput is measured on the wall clock over the measured window.
package dumbbell

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/cc"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/inspect"
	"github.com/ustack/ustack/shape"
)

// MTU of the pair: Ethernet's.
const MTU = 1500

// FrameBytes is the length on the emulated wire of a full-sized data
// segment: Ethernet header, IPv4, TCP with timestamps, 1448 bytes payload.
const FrameBytes = 14 + MTU

// PayloadBytes is the payload of a full-sized segment (TCP timestamps on).
const PayloadBytes = 1448

// Flow is one bulk transfer.
type Flow struct {
	CC    string        // congestion control (package cc's name)
	Start time.Duration // after the run starts
}

// Config is one experiment.
type Config struct {
	Rate     uint64        // bottleneck rate in bit/s
	RTT      time.Duration // base round-trip time, half on each way
	Buffer   int           // bottleneck queue in packets
	Loss     float64       // random loss of the data direction, 0 to 1
	Seed     uint64        // of the loss
	Warmup   time.Duration // from the start to the measured window
	Duration time.Duration // of the measured window
	// Sample is the interval of the traces (0: no traces).
	Sample time.Duration
	Flows  []Flow
}

// BDP is the bandwidth-delay product in full-sized frames.
func BDP(rate uint64, rtt time.Duration) float64 {
	return float64(rate) * rtt.Seconds() / 8 / FrameBytes
}

// Result is what a run measured over its measured window.
type Result struct {
	Config Config
	Flows  []FlowResult
	// Sojourn is the bottleneck's queueing delay of the packets that
	// reached the link during the measured window.
	Sojourn *shape.Sojourn
	// QueueDrops and LossDrops are the bottleneck's drops in the window:
	// a full queue, and the loss model.
	QueueDrops, LossDrops uint64
	// Queue is the bottleneck's queue length in packets at each sample.
	Queue []Sample
}

// FlowResult is one flow's figures.
type FlowResult struct {
	CC      string
	Bytes   int64   // received in the measured window
	Goodput float64 // bit/s over the measured window
	Retrans uint64  // segments retransmitted in the measured window
	Info    string  // the algorithm's own state at the end, as ss -i shows it
	// Err is why the flow's connection failed during the run (netstack
	// gave up on it, e.g. a segment resent too often), or "". The run goes
	// on with the other flows; this one's figures count until it failed.
	Err      string
	Cwnd     []Sample // packets
	Ssthresh []Sample // packets
	SRTT     []Sample // milliseconds
}

// Sample is a value at a time since the run started.
type Sample struct {
	T time.Duration
	V float64
}

// TotalGoodput is the sum of the flows' goodputs in bit/s.
func (r *Result) TotalGoodput() float64 {
	var sum float64
	for _, f := range r.Flows {
		sum += f.Goodput
	}
	return sum
}

// Jain is Jain's fairness index of xs: (Σx)² / (n·Σx²), 1 when all are
// equal, 1/n when one has everything; 0 for no values or all zero.
func Jain(xs ...float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return 0
	}
	return sum * sum / (float64(len(xs)) * sq)
}

func (c *Config) check() error {
	switch {
	case c.Rate == 0:
		return errors.New("dumbbell: Rate is 0; set the bottleneck rate in bit/s")
	case c.RTT <= 0:
		return errors.New("dumbbell: RTT is 0; set the base round-trip time")
	case c.Buffer <= 0:
		return errors.New("dumbbell: Buffer is 0; set the queue in packets")
	case c.Duration <= 0:
		return errors.New("dumbbell: Duration is 0; set the measured window")
	case len(c.Flows) == 0:
		return errors.New("dumbbell: no Flows")
	case c.Loss < 0 || c.Loss >= 1:
		return fmt.Errorf("dumbbell: Loss %v is not in [0, 1)", c.Loss)
	}
	for _, f := range c.Flows {
		if err := cc.Check(f.CC); err != nil {
			return fmt.Errorf("dumbbell: %w", err)
		}
	}
	return nil
}

// Specs are the bottleneck's egress and ingress specs in shape's text form.
func (c *Config) Specs() (egress, ingress string) {
	half := c.RTT / 2
	egress = fmt.Sprintf("rate %dbit delay %v limit %d", c.Rate, half, c.Buffer)
	if c.Loss > 0 {
		egress += fmt.Sprintf(" loss %g%% seed %d", 100*c.Loss, c.Seed)
	}
	return egress, fmt.Sprintf("delay %v", c.RTT-half)
}

// Run runs the experiment; ctx cuts it short (an error).
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	eg, in := c.Specs()
	egSpec, err := shape.Parse(eg)
	if err != nil {
		return nil, fmt.Errorf("dumbbell: egress %q: %w", eg, err)
	}
	inSpec, err := shape.Parse(in)
	if err != nil {
		return nil, fmt.Errorf("dumbbell: ingress %q: %w", in, err)
	}
	// Buffers far above any window the bottleneck allows, so that only
	// congestion control limits a flow.
	bufs := ustack.TCPOptions{SendBuffer: ustack.BufferRange{Min: 4096, Default: 8 << 20, Max: 8 << 20},
		ReceiveBuffer: ustack.BufferRange{Min: 4096, Default: 8 << 20, Max: 8 << 20}}
	snd, rcv, err := ustack.NewPair(ustack.Config{MTU: MTU, TCP: bufs, Link: ustack.Link{Egress: egSpec, Ingress: inSpec}}, ustack.Config{MTU: MTU, TCP: bufs})
	if err != nil {
		return nil, fmt.Errorf("dumbbell: %w", err)
	}
	defer snd.Close()
	defer rcv.Close()
	ln, err := rcv.Listen("tcp4", net.JoinHostPort(rcv.Addrs()[0].Addr().String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("dumbbell: listen: %w", err)
	}
	defer ln.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &run{cfg: c, snd: snd, ln: ln, start: time.Now(), received: map[uint16]*atomic.Int64{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.acceptAll()
	}()
	errs := make(chan error, len(c.Flows))
	for _, f := range c.Flows {
		fs := &flowState{cc: f.CC}
		r.flows = append(r.flows, fs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.flow(ctx, f, fs); err != nil && ctx.Err() == nil {
				errs <- err
				cancel()
			}
		}()
	}
	res, err := r.measure(ctx)
	cancel()
	ln.Close()
	r.closeConns()
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return res, err
}

type run struct {
	cfg   Config
	snd   *ustack.Stack
	ln    net.Listener
	start time.Time
	flows []*flowState // set before measure starts

	mu       sync.Mutex
	received map[uint16]*atomic.Int64 // by the sender's port
	conns    []net.Conn
	closed   bool
	readers  sync.WaitGroup
}

type flowState struct {
	cc   string
	port atomic.Uint32 // the sender's local port, 0 until connected
	mu   sync.Mutex
	err  error // the connection failed
}

func (fs *flowState) failed() string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.err == nil {
		return ""
	}
	return fs.err.Error()
}

// counter is the received-bytes counter of the connection from port,
// made by whichever end asks first.
func (r *run) counter(port uint16) *atomic.Int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.received[port]
	if n == nil {
		n = new(atomic.Int64)
		r.received[port] = n
	}
	return n
}

// receivedBy is what the flow's receiver has read so far.
func (r *run) receivedBy(fs *flowState) int64 {
	p := fs.port.Load()
	if p == 0 {
		return 0
	}
	return r.counter(uint16(p)).Load()
}

// keep keeps c for closeConns, and counts a reader of it in; after
// closeConns it closes c and returns false.
func (r *run) keep(c net.Conn, reader bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns = append(r.conns, c)
	if reader {
		r.readers.Add(1)
	}
	return true
}

// closeConns closes every connection and waits for the readers to end.
func (r *run) closeConns() {
	r.mu.Lock()
	r.closed = true
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.readers.Wait()
}

// flow connects at f.Start and sends until ctx ends.
func (r *run) flow(ctx context.Context, f Flow, fs *flowState) error {
	if f.Start > 0 {
		t := time.NewTimer(f.Start)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	c, err := r.snd.DialContext(ctx, "tcp4", r.ln.Addr().String())
	if err != nil {
		return fmt.Errorf("dumbbell: dial: %w", err)
	}
	if !r.keep(c, false) {
		return nil
	}
	if err := c.(*ustack.TCPConn).SetCongestionControl(f.CC); err != nil {
		return fmt.Errorf("dumbbell: %w", err)
	}
	fs.port.Store(uint32(portOf(c.LocalAddr())))
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		if _, err := c.Write(buf); err != nil {
			if ctx.Err() == nil {
				fs.mu.Lock()
				fs.err = err
				fs.mu.Unlock()
			}
			return nil
		}
	}
	return nil
}

func portOf(a net.Addr) uint16 {
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.ParseUint(p, 10, 16)
	return uint16(n)
}

// acceptAll takes the flows' connections at the receiver and counts what
// each receives, until the listener closes.
func (r *run) acceptAll() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if !r.keep(c, true) {
			return
		}
		n := r.counter(portOf(c.RemoteAddr()))
		go func() {
			defer r.readers.Done()
			buf := make([]byte, 64<<10)
			for {
				k, err := c.Read(buf)
				n.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
}

// snapshot is the counters at one moment.
type snapshot struct {
	at       time.Time
	received []int64
	retrans  []uint64
	info     []string
	sojourn  *shape.Sojourn
	link     shape.Stats
}

func (r *run) snapshot() snapshot {
	// The bytes received are read at the same instant as the clock: the
	// goodput divides one by the other, and the rest (TCP_INFO of every
	// socket) can take milliseconds on a busy machine, which counted the
	// bytes that arrived meanwhile without their time.
	s := snapshot{at: time.Now()}
	for _, fs := range r.flows {
		s.received = append(s.received, r.receivedBy(fs))
	}
	s.sojourn, s.link = r.snd.LinkSojourn(shape.Egress), r.snd.LinkStats(shape.Egress)
	infos := r.tcpInfo()
	for _, fs := range r.flows {
		var retrans uint64
		var info string
		if ti := infos[uint16(fs.port.Load())]; ti != nil {
			retrans, info = ti.Retrans, ti.CCInfo
		}
		s.retrans = append(s.retrans, retrans)
		s.info = append(s.info, info)
	}
	return s
}

// tcpInfo is the sender's connections' TCP_INFO by local port.
func (r *run) tcpInfo() map[uint16]*api.TCPInfo {
	out := map[uint16]*api.TCPInfo{}
	for _, s := range inspect.Sockets(&inspect.Target{Stack: r.snd}, true) {
		if s.TCP != nil {
			out[s.Local.Port] = s.TCP
		}
	}
	return out
}

// sample adds a point to each trace.
func (r *run) sample(res *Result) {
	t := time.Since(r.start)
	infos := r.tcpInfo()
	for i, fs := range r.flows {
		if ti := infos[uint16(fs.port.Load())]; ti != nil && fs.port.Load() != 0 {
			res.Flows[i].Cwnd = append(res.Flows[i].Cwnd, Sample{t, float64(ti.Cwnd)})
			res.Flows[i].Ssthresh = append(res.Flows[i].Ssthresh, Sample{t, float64(ti.Ssthresh)})
			res.Flows[i].SRTT = append(res.Flows[i].SRTT, Sample{t, ti.RTTMs})
		}
	}
	res.Queue = append(res.Queue, Sample{t, float64(r.snd.LinkStats(shape.Egress).QueuePackets)})
}

// measure samples the traces until the end of the run and takes the
// counters at the start and end of the measured window.
func (r *run) measure(ctx context.Context) (*Result, error) {
	res := &Result{Config: r.cfg, Flows: make([]FlowResult, len(r.flows))}
	for i, fs := range r.flows {
		res.Flows[i].CC = fs.cc
	}
	var tick <-chan time.Time
	if r.cfg.Sample > 0 {
		t := time.NewTicker(r.cfg.Sample)
		defer t.Stop()
		tick = t.C
	}
	until := func(at time.Time) error {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick:
				r.sample(res)
			case <-t.C:
				return nil
			}
		}
	}
	if err := until(r.start.Add(r.cfg.Warmup)); err != nil {
		return nil, err
	}
	first := r.snapshot()
	if err := until(first.at.Add(r.cfg.Duration)); err != nil {
		return nil, err
	}
	last := r.snapshot()
	took := last.at.Sub(first.at).Seconds()
	for i := range res.Flows {
		f := &res.Flows[i]
		f.Bytes = last.received[i] - first.received[i]
		f.Goodput = float64(f.Bytes) * 8 / took
		// A connection that failed has no counter left at the end.
		f.Retrans = max(last.retrans[i], first.retrans[i]) - first.retrans[i]
		f.Info = last.info[i]
		f.Err = r.flows[i].failed()
	}
	res.Sojourn = last.sojourn.Since(first.sojourn)
	res.QueueDrops = last.link.DroppedQueue - first.link.DroppedQueue
	res.LossDrops = last.link.DroppedLoss - first.link.DroppedLoss
	return res, nil
}
