package observe

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/netstack"
)

// TraceConfig says what WriteTrace records.
type TraceConfig struct {
	Stack  string // the stack's name, for the start record
	Filter Filter
	Hub    *Hub      // control-block samples; nil for none
	Mirror *Mirror   // packet records; nil for none
	Rules  *RuleFeed // filter-verdict records; nil for none
	// Queue is each source's queue length; 0 means 65536 records.
	Queue int
}

// traceSnapLen covers Ethernet, the largest IPv4/IPv6 header we parse and
// a TCP header with 40 bytes of options.
const traceSnapLen = 14 + 60 + 60

// WriteTrace writes a trace (JSON lines) to w until ctx is done, then
// writes the end record and returns it. flush, if not nil, is called
// whenever the queues are empty, so a live reader sees records promptly.
// It returns early with an error if w fails (the reader went away).
func WriteTrace(ctx context.Context, w io.Writer, flush func() error, cfg TraceConfig) (api.EndRecord, error) {
	start := time.Now()
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	end := api.EndRecord{Kind: "end"}
	q := cfg.Queue
	if q <= 0 {
		q = 1 << 16
	}
	var samples <-chan Sample
	var frames <-chan Frame
	var verdicts <-chan RuleEvent
	var sampleSub *Subscription
	var frameSub *FrameSubscription
	var ruleSub *RuleSubscription
	if cfg.Hub != nil {
		sampleSub = cfg.Hub.Subscribe(cfg.Filter, q)
		defer sampleSub.Close()
		samples = sampleSub.C()
	}
	if cfg.Mirror != nil {
		frameSub = cfg.Mirror.Subscribe(traceSnapLen, q)
		defer frameSub.Close()
		frames = frameSub.C()
	}
	if cfg.Rules != nil {
		ruleSub = cfg.Rules.Subscribe(cfg.Filter, q)
		defer ruleSub.Close()
		verdicts = ruleSub.C()
	}
	doFlush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		if flush != nil {
			return flush()
		}
		return nil
	}
	if err := enc.Encode(api.StartRecord{Kind: "start", Version: api.TraceVersion, Stack: cfg.Stack,
		Time: start.UTC().Format(time.RFC3339Nano), Filter: cfg.Filter.String()}); err != nil {
		return end, err
	}
	if err := doFlush(); err != nil {
		return end, err
	}
	rt := recoveryTracker{}
	since := func(t time.Time) float64 { return math.Round(t.Sub(start).Seconds()*1e6) / 1e6 }
	writeSample := func(s Sample) error {
		end.Samples++
		return enc.Encode(cbRecord(s, since(s.Time), rt.state(s)))
	}
	writeFrame := func(f Frame) error {
		rec, ok := pktRecord(f, cfg.Filter)
		if !ok {
			return nil
		}
		rec.T = since(f.Time)
		end.Packets++
		return enc.Encode(rec)
	}
	writeVerdict := func(ev RuleEvent) error {
		end.Rules++
		return enc.Encode(ruleRecord(ev, since(ev.Time)))
	}
	var err error
loop:
	for err == nil {
		select {
		case <-ctx.Done():
			break loop
		case s := <-samples:
			err = writeSample(s)
		case f := <-frames:
			err = writeFrame(f)
		case ev := <-verdicts:
			err = writeVerdict(ev)
		}
		if err == nil && len(samples) == 0 && len(frames) == 0 && len(verdicts) == 0 {
			err = doFlush()
		}
	}
	if err != nil {
		return end, err
	}
	// Stop the sources, then write what they had queued, so the counts in
	// the end record are the records in the file.
	if sampleSub != nil {
		sampleSub.Close()
		for len(samples) > 0 && err == nil {
			err = writeSample(<-samples)
		}
		end.Dropped += sampleSub.Dropped()
	}
	if frameSub != nil {
		frameSub.Close()
		for len(frames) > 0 && err == nil {
			err = writeFrame(<-frames)
		}
		end.Dropped += frameSub.Dropped()
	}
	if ruleSub != nil {
		ruleSub.Close()
		for len(verdicts) > 0 && err == nil {
			err = writeVerdict(<-verdicts)
		}
		end.Dropped += ruleSub.Dropped()
	}
	if err != nil {
		return end, err
	}
	end.T = since(time.Now())
	if err := enc.Encode(end); err != nil {
		return end, err
	}
	return end, doFlush()
}

func addrPort(a tcpip.Address, port uint16) string {
	ap := netstack.NetipAddrPort(a, port)
	if !ap.Addr().IsValid() {
		return fmt.Sprintf("?:%d", port)
	}
	return ap.String()
}

func cbRecord(s Sample, t float64, recovery string) api.CBRecord {
	return api.CBRecord{
		Kind:        "cb",
		T:           t,
		Local:       addrPort(s.ID.LocalAddress, s.ID.LocalPort),
		Remote:      addrPort(s.ID.RemoteAddress, s.ID.RemotePort),
		State:       s.State,
		SndUna:      uint32(s.SndUna),
		SndNxt:      uint32(s.SndNxt),
		SndWnd:      uint32(s.SndWnd),
		RcvNxt:      uint32(s.RcvNxt),
		RcvWnd:      uint32(s.RcvWnd),
		Cwnd:        s.Cwnd,
		Ssthresh:    min(s.Ssthresh, math.MaxInt32), // netstack's "infinite" is MaxInt
		SRTTus:      s.SRTT.Microseconds(),
		RTTVarus:    s.RTTVar.Microseconds(),
		RTOus:       s.RTO.Microseconds(),
		MSS:         s.MSS,
		Sacked:      s.Sacked,
		Retransmits: s.Retransmits,
		Recovery:    recovery,
	}
}

func ruleRecord(ev RuleEvent, t float64) api.RuleRecord {
	end := func(ap netip.AddrPort) string {
		switch {
		case !ap.Addr().IsValid():
			return "?"
		case ap.Port() == 0:
			return ap.Addr().String()
		}
		return ap.String()
	}
	return api.RuleRecord{Kind: "rule", T: t, Table: ev.Table, Chain: ev.Chain, Rule: ev.Rule, Index: ev.Index,
		Verdict: ev.Verdict, Proto: ev.Proto, Src: end(ev.Src), Dst: end(ev.Dst), Len: ev.Len}
}

// pktRecord turns a frame into a packet record if it is a TCP segment of
// a connection the filter selects.
func pktRecord(f Frame, filter Filter) (api.PktRecord, bool) {
	seg, ok := ParseEthernetTCP(f.Data)
	if !ok {
		return api.PktRecord{}, false
	}
	local, remote := seg.Src, seg.Dst
	if f.Dir == In {
		local, remote = seg.Dst, seg.Src
	}
	if !filter.matchAddrPort(local) && !filter.matchAddrPort(remote) {
		return api.PktRecord{}, false
	}
	rec := api.PktRecord{
		Kind:   "pkt",
		Local:  local.String(),
		Remote: remote.String(),
		Dir:    f.Dir.String(),
		Seq:    seg.Seq,
		Len:    seg.Len,
		Ack:    seg.Ack,
		Win:    seg.Win,
		Flags:  FlagString(seg.Flags),
		SACK:   seg.SACK,
		MSS:    seg.MSS,
		SACKOK: seg.SACKOK,
	}
	if seg.WScale >= 0 {
		ws := seg.WScale
		rec.WScale = &ws
	}
	return rec, true
}

func (f Filter) matchAddrPort(ap netip.AddrPort) bool {
	if f.Port != 0 && f.Port != ap.Port() {
		return false
	}
	return !f.Addr.IsValid() || f.Addr == ap.Addr().Unmap()
}

// recoveryTracker names each connection's loss-recovery state. netstack's
// probe says when fast/SACK recovery is active, but not RTO recovery;
// that is inferred from the endpoint's RTO counter: after an RTO the
// connection is in "rto" until SND.UNA passes the recovery point netstack
// set (SND.NXT-1 at the timeout), which is when netstack returns to Open.
type recoveryTracker map[stack.TransportEndpointID]*connRecovery

type connRecovery struct {
	timeouts uint64
	inRTO    bool
	point    seqnum.Value
}

func (rt recoveryTracker) state(s Sample) string {
	c, ok := rt[s.ID]
	if !ok {
		c = &connRecovery{timeouts: s.Timeouts}
		rt[s.ID] = c
	}
	if s.Timeouts > c.timeouts {
		c.timeouts = s.Timeouts
		c.inRTO = true
		c.point = s.RecoveryPoint
	}
	if c.inRTO && c.point.LessThan(s.SndUna) {
		c.inRTO = false
	}
	switch {
	case s.FastRecovery && s.SACKPermitted:
		return "sack"
	case s.FastRecovery:
		return "fast"
	case c.inRTO:
		return "rto"
	}
	return "open"
}

func itoa(n int) string { return fmt.Sprint(n) }
