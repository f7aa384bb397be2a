package shape

import (
	"container/heap"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Bounds on what the delay line holds, whatever the spec: packets in
// flight on the emulated wire. A sender faster than the line can drain
// would otherwise grow it without end; what does not fit is dropped and
// counted with the queue's drops.
const (
	maxLinePackets = 1 << 18
	maxLineBytes   = 256 << 20
)

// entry is one packet inside a shaper.
type entry struct {
	pkt         *stack.PacketBuffer // one reference held by the shaper
	proto       tcpip.NetworkProtocolNumber
	size        int
	arrival     time.Duration // when it entered the queue
	delay       time.Duration // propagation delay drawn for it
	reordered   bool          // skips the delay
	rxValidated bool          // ingress: the lower vouched for its checksums
	due         time.Duration // when it leaves the delay line
	seq         uint64        // arrival order, to keep equal due times in order
}

// shaper is one direction of a link: the queue in front of the rate, the
// link that serialises packets at the rate, and the delay line behind it
// (Dummynet's pipe), with netem's loss, duplication, corruption and
// reordering decided as each packet arrives.
//
// Nothing runs on a timer tick: the link's and the delay line's next event
// is computed, one clock timer is set for it, and when it fires every
// packet whose time has come is released in one batch. Departure times
// are computed from the rate, not measured, so a late timer delays a
// batch but does not change the rate. On a manual clock the timer fires
// inside Advance, so Advance returns after every packet due by then has
// been delivered.
type shaper struct {
	dir   Direction
	clock tcpip.Clock
	// deliver hands a batch on, releasing the shaper's references, and
	// returns how many of its packets the next layer refused. It is
	// called without mu held, one batch at a time, in order.
	deliver func([]*entry) int

	// bypass lets packets straight through: the spec changes nothing and
	// nothing is held.
	bypass atomic.Bool
	// stripTXChecksum: the spec corrupts, so checksums must be computed
	// before the packet reaches the shaper (see Endpoint.Capabilities).
	stripTXChecksum atomic.Bool

	sentPackets atomic.Uint64
	sentBytes   atomic.Uint64

	mu     sync.Mutex
	idle   sync.Cond // signalled when releasing ends
	spec   Spec
	rng    *rand.Rand
	seed   uint64
	loss   lossState
	gapCnt int
	seq    uint64

	queue      ring // waiting for the link
	queueBytes int
	maxPacket  int
	linkFree   time.Duration // when the link finishes its current packet
	red        red
	codel      codel

	line      lineHeap // on the wire, by due time
	lineBytes int
	lastDue   time.Duration // the FIFO floor for the next due time

	timer     tcpip.Timer
	timerAt   time.Duration
	armed     bool
	releasing bool // a goroutine is delivering; others leave the work to it
	closed    bool
	batch     []*entry
	free      []*entry // entries to reuse

	passThrough bool // spec.PassThrough(), kept for the hot path

	c       counters
	sojourn Sojourn
}

type counters struct {
	droppedLoss, droppedQueue, droppedAQM, duplicated, corrupted, reordered, errors uint64
}

// now is the clock's time. Times inside a shaper are durations since the
// zero of the clock's monotonic time, so that arithmetic on them is plain.
func (s *shaper) now() time.Duration {
	return s.clock.NowMonotonic().Sub(tcpip.MonotonicTime{})
}

func newShaper(dir Direction, clock tcpip.Clock, spec Spec, deliver func([]*entry) int) *shaper {
	s := &shaper{dir: dir, clock: clock, deliver: deliver}
	s.idle.L = &s.mu
	s.setLocked(spec, s.now())
	return s
}

// rngFor seeds a generator for one direction: the same seed gives each
// direction its own sequence.
func rngFor(seed uint64, dir Direction) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x5368617065000000|uint64(dir)))
}

// setLocked puts spec in force from now on (the caller has validated it).
// Packets already inside keep what was decided for them; those still
// waiting for the link are sent at the new rate.
func (s *shaper) setLocked(spec Spec, now time.Duration) {
	if s.rng != nil {
		s.advanceLocked(now)
	}
	old := s.spec
	s.spec = spec
	if spec.HasSeed {
		s.seed = spec.Seed
		s.rng = rngFor(s.seed, s.dir)
	} else if s.rng == nil {
		s.seed = rand.Uint64()
		s.rng = rngFor(s.seed, s.dir)
	}
	if spec.Loss.Model != old.Loss.Model || spec.HasSeed {
		s.loss = stateGood
	}
	if spec.AQM.Kind != old.AQM.Kind {
		s.red, s.codel = red{}, codel{}
	}
	if spec.Gap != old.Gap {
		s.gapCnt = 0
	}
	s.passThrough = spec.PassThrough()
	s.stripTXChecksum.Store(spec.Corrupt > 0)
	s.updateBypassLocked()
}

func (s *shaper) updateBypassLocked() {
	s.bypass.Store(!s.closed && s.passThrough && s.queue.len() == 0 && len(s.line) == 0)
}

func (s *shaper) newEntry() *entry {
	if n := len(s.free); n > 0 {
		e := s.free[n-1]
		s.free = s.free[:n-1]
		return e
	}
	return new(entry)
}

// recycle takes back an entry whose packet has been handed on or released.
func (s *shaper) recycle(e *entry) {
	*e = entry{}
	if len(s.free) < 1024 {
		s.free = append(s.free, e)
	}
}

// count records packets let through on the bypass.
func (s *shaper) count(pkts []*stack.PacketBuffer) {
	n := 0
	for _, p := range pkts {
		n += p.Size()
	}
	s.sentPackets.Add(uint64(len(pkts)))
	s.sentBytes.Add(uint64(n))
}

// enqueue takes packets in; the caller keeps its references. The packets
// due at once are delivered before enqueue returns, from the caller's
// goroutine, unless another goroutine is delivering already. It reports
// false, taking nothing, once the shaper is closed.
func (s *shaper) enqueue(pkts []*stack.PacketBuffer, proto tcpip.NetworkProtocolNumber, rxValidated bool) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	now := s.now()
	for _, pkt := range pkts {
		// The link first, so the packet finds the queue as it is now.
		s.advanceLocked(now)
		s.admitLocked(now, pkt, proto, rxValidated)
	}
	s.updateBypassLocked()
	s.kickAndUnlock(now)
	return true
}

// set puts spec in force (the caller has validated it).
func (s *shaper) set(spec Spec) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	now := s.now()
	s.setLocked(spec, now)
	s.kickAndUnlock(now)
}

// kickAndUnlock delivers what is due now, from this goroutine unless
// another is delivering already, or sets the timer for the next event; it
// unlocks mu.
func (s *shaper) kickAndUnlock(now time.Duration) {
	if s.releasing {
		s.mu.Unlock()
		return
	}
	if next, ok := s.nextEventLocked(); ok && next <= now {
		s.mu.Unlock()
		s.run(now)
		return
	}
	s.armLocked(now)
	s.mu.Unlock()
}

// admitLocked takes one packet through netem's per-packet decisions:
// duplicate, loss, corrupt, queue, reorder, delay.
func (s *shaper) admitLocked(now time.Duration, pkt *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber, rxValidated bool) {
	copies := 1
	if s.spec.Duplicate > 0 && s.rng.Float64() < s.spec.Duplicate {
		copies++
	}
	// As in netem, a loss takes one of the copies: a duplicated packet
	// that is "lost" still goes out once.
	if s.loss.lose(&s.spec.Loss, s.rng) {
		copies--
	}
	if copies == 0 {
		s.c.droppedLoss++
		return
	}
	s.pathLocked(now, pkt.IncRef(), proto, rxValidated)
	if copies == 2 {
		s.c.duplicated++
		// netem passes the copy through itself again, without
		// duplicating it: it meets the loss model once more.
		if s.loss.lose(&s.spec.Loss, s.rng) {
			s.c.droppedLoss++
			return
		}
		s.pathLocked(now, copyPacket(pkt), proto, rxValidated)
	}
}

// pathLocked takes one packet, whose reference it owns, from corruption
// onwards.
func (s *shaper) pathLocked(now time.Duration, pkt *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber, rxValidated bool) {
	size := pkt.Size()
	// A super-frame (GSO) is left whole: its checksum is the device's to
	// complete, so a flipped bit would go unnoticed.
	if s.spec.Corrupt > 0 && s.rng.Float64() < s.spec.Corrupt && size > 0 && pkt.GSOOptions.Type == stack.GSONone {
		c := copyPacket(pkt)
		pkt.DecRef()
		pkt = c
		flipBit(pkt, s.rng.IntN(size*8))
		rxValidated = false
		s.c.corrupted++
	}
	s.seq++
	e := s.newEntry()
	*e = entry{pkt: pkt, proto: proto, size: size, arrival: now, rxValidated: rxValidated, seq: s.seq}
	s.maxPacket = max(s.maxPacket, size)
	if s.spec.Rate > 0 && !s.admitQueueLocked(now, e) {
		pkt.DecRef()
		s.recycle(e)
		return
	}
	if s.spec.Gap > 0 {
		if s.gapCnt < s.spec.Gap-1 || s.rng.Float64() >= s.spec.Reorder {
			s.gapCnt++
		} else {
			s.gapCnt = 0
			e.reordered = true
			s.c.reordered++
		}
	}
	if !e.reordered {
		e.delay = sampleDelay(&s.spec, s.rng)
	}
	switch {
	case s.spec.Rate == 0 && s.queue.len() == 0:
		s.toLineLocked(e, now)
	case e.reordered:
		s.queue.pushFront(e)
		s.queueBytes += size
	default:
		s.queue.pushBack(e)
		s.queueBytes += size
	}
}

// admitQueueLocked decides whether the queue takes e: RED first, if set,
// then the limits.
func (s *shaper) admitQueueLocked(now time.Duration, e *entry) bool {
	if s.spec.AQM.Kind == RED {
		p := &s.spec.AQM.RED
		q := float64(s.queue.len())
		if p.Bytes {
			q = float64(s.queueBytes)
		}
		var idle time.Duration
		if s.queue.len() == 0 && s.linkFree < now {
			idle = now - s.linkFree
		}
		if s.red.drop(p, q, idle, s.txTime(e.size), s.rng) {
			s.c.droppedAQM++
			return false
		}
	}
	if s.queue.len() >= s.spec.queueLimit() || (s.spec.LimitBytes > 0 && s.queueBytes+e.size > s.spec.LimitBytes) {
		s.c.droppedQueue++
		return false
	}
	return true
}

// txTime is how long the link takes to send size bytes at the current rate.
func (s *shaper) txTime(size int) time.Duration {
	if s.spec.Rate == 0 {
		return 0
	}
	n := int64(size + s.spec.Overhead)
	if c := int64(s.spec.CellSize); c > 0 {
		n = (n + c - 1) / c * (c + int64(s.spec.CellOverhead))
	}
	if n <= 0 {
		return 0
	}
	// n·8 s / rate, exact in 128 bits; hours at most.
	hi, lo := bits.Mul64(uint64(n), 8*uint64(time.Second))
	if hi >= s.spec.Rate {
		return time.Hour
	}
	q, _ := bits.Div64(hi, lo, s.spec.Rate)
	return time.Duration(min(q, uint64(time.Hour)))
}

// advanceLocked runs the link up to now: each packet at the head of the
// queue starts when the link is free (CoDel may drop it then), occupies the
// link for its serialisation time and then enters the delay line.
func (s *shaper) advanceLocked(now time.Duration) {
	for s.queue.len() > 0 {
		start := max(s.linkFree, s.queue.front().arrival)
		if start > now {
			return
		}
		var e *entry
		if s.spec.AQM.Kind == CoDel {
			e = s.dequeueCoDel(start)
		} else {
			e = s.popQueue()
		}
		if e == nil {
			continue
		}
		s.sojourn.add(start - e.arrival)
		s.linkFree = start + s.txTime(e.size)
		s.toLineLocked(e, s.linkFree)
	}
}

func (s *shaper) popQueue() *entry {
	e := s.queue.popFront()
	if e != nil {
		s.queueBytes -= e.size
	}
	return e
}

func (s *shaper) dropAQM(e *entry) {
	s.c.droppedAQM++
	e.pkt.DecRef()
	s.recycle(e)
}

// toLineLocked puts e, which left the link at sent, on the delay line.
func (s *shaper) toLineLocked(e *entry, sent time.Duration) {
	if len(s.line) >= maxLinePackets || s.lineBytes+e.size > maxLineBytes {
		s.c.droppedQueue++
		e.pkt.DecRef()
		s.recycle(e)
		return
	}
	e.due = sent
	if !e.reordered {
		e.due = sent + e.delay
		if !s.spec.JitterReorder {
			e.due = max(e.due, s.lastDue)
			s.lastDue = e.due
		}
	}
	heap.Push(&s.line, e)
	s.lineBytes += e.size
}

// nextEventLocked is when the link or the delay line next has work.
func (s *shaper) nextEventLocked() (time.Duration, bool) {
	var t time.Duration
	ok := false
	if len(s.line) > 0 {
		t, ok = s.line[0].due, true
	}
	if s.queue.len() > 0 {
		start := max(s.linkFree, s.queue.front().arrival)
		if !ok || start < t {
			t, ok = start, true
		}
	}
	return t, ok
}

// armLocked sets the timer for the next event.
func (s *shaper) armLocked(now time.Duration) {
	next, ok := s.nextEventLocked()
	if !ok || s.closed || (s.armed && s.timerAt <= next) {
		return
	}
	s.timerAt, s.armed = next, true
	d := max(next-now, 0)
	if s.timer == nil {
		s.timer = s.clock.AfterFunc(d, s.fire)
		return
	}
	s.timer.Stop()
	s.timer.Reset(d)
}

func (s *shaper) fire() {
	s.mu.Lock()
	s.armed = false
	s.mu.Unlock()
	s.run(s.now())
}

// run delivers every packet whose time has come by now, in batches, until
// none is left, then sets the timer for the next. Only one goroutine
// delivers at a time, so packets leave in order; one that finds another
// delivering leaves its packets to it.
func (s *shaper) run(now time.Duration) {
	s.mu.Lock()
	if s.releasing || s.closed {
		s.mu.Unlock()
		return
	}
	s.releasing = true
	for !s.closed {
		s.advanceLocked(now)
		batch := s.batch[:0]
		for len(s.line) > 0 && s.line[0].due <= now {
			e := heap.Pop(&s.line).(*entry)
			s.lineBytes -= e.size
			batch = append(batch, e)
		}
		if len(batch) == 0 {
			break
		}
		s.mu.Unlock()
		n := 0
		for _, e := range batch {
			n += e.size
		}
		s.sentPackets.Add(uint64(len(batch)))
		s.sentBytes.Add(uint64(n))
		failed := s.deliver(batch)
		s.mu.Lock()
		s.c.errors += uint64(failed)
		for i, e := range batch {
			s.recycle(e)
			batch[i] = nil
		}
		s.batch = batch[:0]
		if s.queue.len() == 0 && len(s.line) == 0 {
			break
		}
		// Delivering took time: more may be due.
		now = s.now()
	}
	s.releasing = false
	s.updateBypassLocked()
	s.armLocked(now)
	s.idle.Broadcast()
	s.mu.Unlock()
}

// close stops the shaper and frees what it holds. It waits for a delivery
// in progress to end.
func (s *shaper) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.bypass.Store(false)
	for s.releasing {
		s.idle.Wait()
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	for s.queue.len() > 0 {
		s.popQueue().pkt.DecRef()
	}
	for _, e := range s.line {
		e.pkt.DecRef()
	}
	s.line, s.lineBytes = nil, 0
}

func (s *shaper) stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Spec:            s.spec,
		Seed:            s.seed,
		SentPackets:     s.sentPackets.Load(),
		SentBytes:       s.sentBytes.Load(),
		DroppedLoss:     s.c.droppedLoss,
		DroppedQueue:    s.c.droppedQueue,
		DroppedAQM:      s.c.droppedAQM,
		Duplicated:      s.c.duplicated,
		Corrupted:       s.c.corrupted,
		Reordered:       s.c.reordered,
		Errors:          s.c.errors,
		QueuePackets:    s.queue.len(),
		QueueBytes:      s.queueBytes,
		InFlightPackets: len(s.line),
		InFlightBytes:   s.lineBytes,
	}
}

func (s *shaper) sojournCopy() *Sojourn {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.sojourn
	return &h
}

// copyPacket returns a packet of its own holding a copy of pkt's bytes
// and the metadata a link endpoint reads.
func copyPacket(pkt *stack.PacketBuffer) *stack.PacketBuffer {
	b := pkt.ToBuffer()
	data := b.Flatten()
	b.Release()
	c := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(data), Mark: pkt.Mark})
	c.NetworkProtocolNumber = pkt.NetworkProtocolNumber
	c.TransportProtocolNumber = pkt.TransportProtocolNumber
	c.Hash = pkt.Hash
	c.Owner = pkt.Owner
	c.EgressRoute = pkt.EgressRoute
	c.GSOOptions = pkt.GSOOptions
	c.PktType = pkt.PktType
	c.NICID = pkt.NICID
	return c
}

// flipBit flips bit i of pkt's bytes, which must not be shared.
func flipBit(pkt *stack.PacketBuffer, i int) {
	off := i / 8
	for _, s := range pkt.AsSlices() {
		if off < len(s) {
			s[off] ^= 1 << (i % 8)
			return
		}
		off -= len(s)
	}
}

// ring is a FIFO of entries that can also take one at the front.
type ring struct {
	buf  []*entry
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) front() *entry { return r.buf[r.head] }

func (r *ring) grow() {
	if r.n < len(r.buf) {
		return
	}
	nb := make([]*entry, max(16, 2*len(r.buf)))
	for i := range r.n {
		nb[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = nb, 0
}

func (r *ring) pushBack(e *entry) {
	r.grow()
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
}

func (r *ring) pushFront(e *entry) {
	r.grow()
	r.head = (r.head - 1 + len(r.buf)) % len(r.buf)
	r.buf[r.head] = e
	r.n++
}

func (r *ring) popFront() *entry {
	if r.n == 0 {
		return nil
	}
	e := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return e
}

// lineHeap orders the delay line by due time, then arrival.
type lineHeap []*entry

func (h lineHeap) Len() int { return len(h) }
func (h lineHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].seq < h[j].seq
}
func (h lineHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *lineHeap) Push(x any)   { *h = append(*h, x.(*entry)) }
func (h *lineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
