package api

// SocketsReply is the answer to GET /v1/sockets.
type SocketsReply struct {
	Name    string   `json:"name"`
	Sockets []Socket `json:"sockets"`
}

// Socket is one endpoint of the stack, as GET /v1/sockets reports it.
type Socket struct {
	Netid string `json:"netid"` // tcp, udp, icmp or icmp6
	State string `json:"state"` // ss(8)'s names: ESTAB, LISTEN, SYN-SENT, TIME-WAIT, UNCONN ...
	// RecvQ is the bytes received and not yet read (for UDP: the size of
	// the next datagram); SendQ the bytes written and not yet acknowledged,
	// known only from a control block sample. Null when unknown.
	RecvQ   *int     `json:"recv_q"`
	SendQ   *int     `json:"send_q"`
	Local   Addr     `json:"local"`
	Peer    Addr     `json:"peer"`
	Process *Process `json:"process,omitempty"`
	TCP     *TCPInfo `json:"tcp,omitempty"` // with ?info=1, for TCP
}

// Addr is an endpoint address. IP is empty for the unspecified address;
// Any is true for an IPv6 socket that also takes IPv4 (ss shows "*").
type Addr struct {
	IP   string `json:"ip"`
	Port uint16 `json:"port"`
	V6   bool   `json:"v6"`
	Any  bool   `json:"any,omitempty"`
}

// Process is the program that owns a socket.
type Process struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

// TCPInfo is what netstack's TCP_INFO and the endpoint's counters say.
type TCPInfo struct {
	CC          string  `json:"cc"`
	CCInfo      string  `json:"cc_info,omitempty"` // the algorithm's own state (package cc)
	CAState     string  `json:"ca_state"`          // Open, Disorder, FastRecovery, SACKRecovery, RTORecovery
	RTOMs       float64 `json:"rto_ms"`
	RTTMs       float64 `json:"rtt_ms"`
	RTTVarMs    float64 `json:"rttvar_ms"`
	Cwnd        uint32  `json:"cwnd"`     // segments
	Ssthresh    uint32  `json:"ssthresh"` // segments; very large until the first loss
	ReorderSeen bool    `json:"reorder_seen"`
	SegsOut     uint64  `json:"segs_out"`
	SegsIn      uint64  `json:"segs_in"`
	Retrans     uint64  `json:"retrans"` // segments retransmitted, all causes
	FastRetrans uint64  `json:"fast_retrans"`
	Timeouts    uint64  `json:"timeouts"` // RTO expirations
	// Lost is Linux's tcpi_lost as ustack estimates it from the probe's
	// SACK scoreboard (package inspect); absent without a probe sample.
	Lost uint32 `json:"lost,omitempty"`
	// Byte counts as Linux's TCP_INFO has them, for connections of programs
	// under ustack run (inspect.Programs, tcpinfo.AckedSent).
	BytesSent     uint64 `json:"bytes_sent,omitempty"`
	BytesAcked    uint64 `json:"bytes_acked,omitempty"`
	BytesReceived uint64 `json:"bytes_received,omitempty"`
	// ControlBlock is the latest sample of the TCP probe, taken when the
	// connection was established and after each segment it received since;
	// absent when the stack has no probe or the connection is not
	// established yet.
	ControlBlock *ControlBlock `json:"control_block,omitempty"`
}

// ControlBlock is the RFC 793 view of a connection, sampled by netstack's
// TCP probe after the last segment it received. Sequence numbers are raw
// (not relative to the initial ones).
type ControlBlock struct {
	AgeMs         float64 `json:"age_ms"` // since the sample
	SndUna        uint32  `json:"snd_una"`
	SndNxt        uint32  `json:"snd_nxt"`
	RcvNxt        uint32  `json:"rcv_nxt"`
	RcvAcc        uint32  `json:"rcv_acc"` // one past the last byte the peer may send
	MaxSentAck    uint32  `json:"max_sent_ack"`
	SndWnd        uint32  `json:"snd_wnd"` // bytes the peer offered
	RcvWnd        uint32  `json:"rcv_wnd"` // bytes we offered: rcv_acc - rcv_nxt
	SndWscale     uint8   `json:"snd_wscale"`
	RcvWscale     uint8   `json:"rcv_wscale"`
	MSS           int     `json:"mss"`
	Cwnd          int     `json:"cwnd"`
	Ssthresh      int     `json:"ssthresh"`
	Outstanding   int     `json:"unacked"` // segments sent, not acknowledged
	SackedOut     int     `json:"sacked"`
	DupAcks       int     `json:"dup_acks"`
	RTOMs         float64 `json:"rto_ms"`
	SRTTMs        float64 `json:"srtt_ms"`
	RTTVarMs      float64 `json:"rttvar_ms"`
	RACKRTTMs     float64 `json:"rack_rtt_ms"`
	RACKReord     bool    `json:"rack_reord"`
	DSACKSeen     bool    `json:"dsack_seen"`
	InRecovery    bool    `json:"in_recovery"`
	RecoveryFirst uint32  `json:"recovery_first"`
	RecoveryLast  uint32  `json:"recovery_last"`
	SACKPermitted bool    `json:"sack_permitted"`
	Timestamps    bool    `json:"timestamps"`
	SACKBlocks    int     `json:"sack_blocks"` // blocks we advertise (out-of-order data held)
	SndBufUsed    int     `json:"snd_buf_used"`
	SndBufSize    int     `json:"snd_buf_size"`
	RcvBufUsed    int     `json:"rcv_buf_used"`
	RcvBufSize    int     `json:"rcv_buf_size"` // auto-tuned size
}

// Listening reports whether a socket is one ss -l shows: a TCP listener
// or an unconnected datagram socket.
func (s Socket) Listening() bool {
	return s.State == "LISTEN" || s.State == "UNCONN" && s.Netid != "tcp"
}

// Connected reports whether a socket is one ss shows without -a or -l.
func (s Socket) Connected() bool { return s.State != "LISTEN" && s.State != "UNCONN" }
