package lab

import "github.com/ustack/ustack/shape"

// The lab's control API. The lab process serves GET /v1/info (so that
// ustack ls lists it), GET /v1/lab, POST /v1/lab/replay (start the pcap
// links' replays held by ustack lab up --hold-replays) and POST
// /v1/lab/down on the socket named LAB; each node serves a stack's whole API on LAB.NODE, plus
// GET /v1/lab/node; GET and POST /v1/link reach the shapers of its
// interfaces.

// Paths of the lab's own endpoints.
const (
	StatusPath = "/v1/lab"
	DownPath   = "/v1/lab/down"
	ReplayPath = "/v1/lab/replay"
	NodePath   = "/v1/lab/node"
)

// Status is GET /v1/lab: the lab, its nodes and links.
type Status struct {
	Name  string       `json:"name"`
	File  string       `json:"file"`
	PID   int          `json:"pid"`
	Nodes []NodeStatus `json:"nodes"`
	Links []LinkStatus `json:"links"`
}

// NodeStatus is a node as the lab process sees it.
type NodeStatus struct {
	Name       string            `json:"name"`
	Kind       Kind              `json:"kind"`
	PID        int               `json:"pid"`
	State      string            `json:"state"` // "running", or how it ended
	Socket     string            `json:"socket"`
	Interfaces []InterfaceStatus `json:"interfaces"`
	Routes     []string          `json:"routes,omitempty"`
	CC         string            `json:"cc,omitempty"` // congestion control, if the file names one
	Filter     []string          `json:"filter,omitempty"`
}

// InterfaceStatus is one interface of a node.
type InterfaceStatus struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
	MAC   string   `json:"mac"`
	MTU   int      `json:"mtu"`
	Peer  string   `json:"peer"` // "node:iface", "vxlan:ADDR vni N port P" or "host" for nat0
	// Egress and Ingress are the shape specs in force ("" passes
	// everything through); the node's answer has counters as well.
	Egress       string     `json:"egress"`
	Ingress      string     `json:"ingress"`
	EgressStats  *LinkStats `json:"egress_stats,omitempty"`
	IngressStats *LinkStats `json:"ingress_stats,omitempty"`
	Down         bool       `json:"down,omitempty"` // the other end is gone
	// Mutate are the interface's packet-mutator rules with their counters
	// (the node's answer only).
	Mutate *MutateStats `json:"mutate,omitempty"`
}

// MutateStats are an interface's packet-mutator counters (mutate.Stats).
type MutateStats struct {
	Rules     []MutateRuleStats `json:"rules"`
	Malformed uint64            `json:"malformed"`
}

// MutateRuleStats are one rule's counters: frames matched, acted on and
// added.
type MutateRuleStats struct {
	Rule     string `json:"rule"`
	Matched  uint64 `json:"matched"`
	Acted    uint64 `json:"acted"`
	Injected uint64 `json:"injected"`
}

// LinkStatus is one link of the file.
type LinkStatus struct {
	Index int       `json:"index"`
	Ends  []string  `json:"ends"`
	MTU   int       `json:"mtu"`
	Shape [2]string `json:"shape"` // of the frames leaving each end
	// Mutate are the packet-mutator rules at each end, in the form the
	// file and --mutate take.
	Mutate [2][]string `json:"mutate,omitempty"`
	// Pcap is a pcap link's replay, with its counters (the lab process's
	// answer; "waiting" in a file's).
	Pcap *PcapStatus `json:"pcap,omitempty"`
}

// PcapStatus is a pcap link's replay: the capture, where what the
// interface sends is recorded, and how far it got.
type PcapStatus struct {
	File    string `json:"file"`
	Out     string `json:"out,omitempty"`
	Speed   string `json:"speed"` // realtime, max or a factor
	KeepMAC bool   `json:"keep_mac,omitempty"`
	// State is "waiting" (for the node to be up), "replaying", "done" (the
	// capture ended; the link stays up and still records) or "stopped: WHY".
	State string `json:"state"`
	// Replayed are the frames written to the interface, Skipped the records
	// that were not a frame, Sent the frames the interface sent back, and
	// Answered its ARP requests and neighbour solicitations for the
	// capture's senders, answered in their place.
	Replayed uint64 `json:"replayed"`
	Skipped  uint64 `json:"skipped"`
	Sent     uint64 `json:"sent"`
	Answered uint64 `json:"answered"`
}

// NodeReply is GET /v1/lab/node on a node: its interfaces with their
// shapers' counters, routes, and filter rules and chain policies with
// theirs.
type NodeReply struct {
	Lab        string            `json:"lab"`
	Name       string            `json:"name"`
	Kind       Kind              `json:"kind"`
	Interfaces []InterfaceStatus `json:"interfaces"`
	Routes     []string          `json:"routes"`
	Filter     []RuleCounter     `json:"filter"`
	// Policy are the counters of the chains' policies ("-P INPUT ACCEPT"):
	// the packets no rule took.
	Policy []RuleCounter `json:"policy"`
}

// LinkStats are one direction's shaper counters (shape.Stats).
type LinkStats struct {
	SentPackets     uint64 `json:"sent_packets"`
	SentBytes       uint64 `json:"sent_bytes"`
	DroppedLoss     uint64 `json:"dropped_loss"`
	DroppedQueue    uint64 `json:"dropped_queue"`
	DroppedAQM      uint64 `json:"dropped_aqm"`
	Duplicated      uint64 `json:"duplicated"`
	Corrupted       uint64 `json:"corrupted"`
	Reordered       uint64 `json:"reordered"`
	Errors          uint64 `json:"errors"`
	QueuePackets    int    `json:"queue_packets"`
	QueueBytes      int    `json:"queue_bytes"`
	InFlightPackets int    `json:"in_flight_packets"`
	InFlightBytes   int    `json:"in_flight_bytes"`
	Seed            uint64 `json:"seed"`
}

func linkStats(s shape.Stats) *LinkStats {
	return &LinkStats{SentPackets: s.SentPackets, SentBytes: s.SentBytes, DroppedLoss: s.DroppedLoss,
		DroppedQueue: s.DroppedQueue, DroppedAQM: s.DroppedAQM, Duplicated: s.Duplicated, Corrupted: s.Corrupted,
		Reordered: s.Reordered, Errors: s.Errors, QueuePackets: s.QueuePackets, QueueBytes: s.QueueBytes,
		InFlightPackets: s.InFlightPackets, InFlightBytes: s.InFlightBytes, Seed: s.Seed}
}
