package api

// The records of GET /v1/trace, one JSON object a line: a StartRecord,
// CBRecords, PktRecords and (on a stack with filter rules, a lab's router)
// RuleRecords as they come, and an EndRecord when the trace ends
// (docs/trace-format.md). ustack trace writes them to its file as
// they arrive, and ustack plot reads them back.

// TraceVersion is the version of the trace format written in the start
// record (see docs/trace-format.md).
const TraceVersion = 1

// StartRecord is the first line of a trace.
type StartRecord struct {
	Kind    string `json:"kind"` // "start"
	Version int    `json:"version"`
	Stack   string `json:"stack"`
	Time    string `json:"time"` // RFC 3339 with nanoseconds, UTC
	Filter  string `json:"filter"`
}

// CBRecord is one control-block sample.
type CBRecord struct {
	Kind        string  `json:"kind"` // "cb"
	T           float64 `json:"t"`
	Local       string  `json:"local"`
	Remote      string  `json:"remote"`
	State       string  `json:"state"`
	SndUna      uint32  `json:"snd_una"`
	SndNxt      uint32  `json:"snd_nxt"`
	SndWnd      uint32  `json:"snd_wnd"`
	RcvNxt      uint32  `json:"rcv_nxt"`
	RcvWnd      uint32  `json:"rcv_wnd"`
	Cwnd        int     `json:"cwnd"`
	Ssthresh    int     `json:"ssthresh"`
	SRTTus      int64   `json:"srtt_us"`
	RTTVarus    int64   `json:"rttvar_us"`
	RTOus       int64   `json:"rto_us"`
	MSS         int     `json:"mss"`
	Sacked      int     `json:"sacked"`
	Retransmits uint64  `json:"retransmits"`
	Recovery    string  `json:"recovery"` // open, fast, sack, rto
}

// PktRecord is one TCP segment of a traced connection seen at the NIC.
type PktRecord struct {
	Kind          string      `json:"kind"` // "pkt"
	T             float64     `json:"t"`
	Local         string      `json:"local"`
	Remote        string      `json:"remote"`
	Dir           string      `json:"dir"` // "out" sent by the stack, "in" received
	Seq           uint32      `json:"seq"`
	Len           int         `json:"len"`
	Ack           uint32      `json:"ack"`
	Win           uint16      `json:"win"` // the raw header field
	WScaleApplied bool        `json:"wscale_applied"`
	Flags         string      `json:"flags"`
	SACK          [][2]uint32 `json:"sack,omitempty"`
	MSS           int         `json:"mss,omitempty"`
	WScale        *int        `json:"wscale,omitempty"`
	SACKOK        bool        `json:"sack_ok,omitempty"`
}

// RuleRecord is one packet a filter rule took, or that reached a chain's
// end and met its policy.
type RuleRecord struct {
	Kind  string  `json:"kind"` // "rule"
	T     float64 `json:"t"`
	Table string  `json:"table"` // filter, nat
	Chain string  `json:"chain"` // INPUT, FORWARD, OUTPUT, POSTROUTING
	// Rule is the rule as the lab file writes it, or the chain's policy
	// as iptables -S does ("-P FORWARD ACCEPT").
	Rule string `json:"rule"`
	// Index is the rule's position in its chain, from 1 (iptables -L
	// --line-numbers); 0 for the policy.
	Index   int    `json:"index"`
	Verdict string `json:"verdict"` // ACCEPT, DROP, REJECT, MASQUERADE
	Proto   string `json:"proto"`   // tcp, udp, icmp, icmpv6 or the protocol number
	Src     string `json:"src"`     // IP:PORT, or IP for a protocol without ports
	Dst     string `json:"dst"`
	Len     int    `json:"len"` // the IP packet's length
}

// EndRecord is the last line of a trace.
type EndRecord struct {
	Kind    string  `json:"kind"` // "end"
	T       float64 `json:"t"`
	Samples uint64  `json:"samples"`
	Packets uint64  `json:"packets"`
	Rules   uint64  `json:"rules,omitempty"` // rule records
	Dropped uint64  `json:"dropped"`
}

// TraceIDHeader names the trace of a GET /v1/trace answer, for
// POST /v1/trace/stop?id=N.
const TraceIDHeader = "Ustack-Trace-Id"

// The trailers of GET /v1/capture: frames dropped because the reader was
// slow, and frames sent.
const (
	CaptureDroppedTrailer = "Ustack-Capture-Dropped"
	CaptureFramesTrailer  = "Ustack-Capture-Frames"
)
