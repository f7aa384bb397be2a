package api

// LinkPath is the endpoint of the stack's emulated links: GET for their
// specs and counters, POST with a LinkRequest to change one.
const LinkPath = "/v1/link"

// LinkReply is the answer to GET /v1/link[?dev=DEV] and to POST /v1/link:
// the emulated links of the stack's NICs, or of the one asked for.
type LinkReply struct {
	Name  string `json:"name"`
	Links []Link `json:"links"`
}

// Link is the emulated link of one NIC.
type Link struct {
	Dev     string        `json:"dev"`
	Egress  LinkDirection `json:"egress"`
	Ingress LinkDirection `json:"ingress"`
}

// LinkDirection is one direction of a link: the spec in force and its
// counters, those tc -s qdisc shows for a qdisc.
type LinkDirection struct {
	// Spec is in the text form of package shape ("rate 10mbit delay
	// 25ms"), "" when nothing is set.
	Spec string `json:"spec"`
	// Seed is the seed of the direction's random numbers: the spec's, or
	// the one chosen for it.
	Seed uint64 `json:"seed"`

	SentPackets  uint64 `json:"sent_packets"` // duplicates included
	SentBytes    uint64 `json:"sent_bytes"`
	DroppedLoss  uint64 `json:"dropped_loss"`
	DroppedQueue uint64 `json:"dropped_queue"` // the queue was full
	DroppedAQM   uint64 `json:"dropped_aqm"`   // RED or CoDel
	Duplicated   uint64 `json:"duplicated"`
	Corrupted    uint64 `json:"corrupted"`
	Reordered    uint64 `json:"reordered"`
	Errors       uint64 `json:"errors"` // refused by the link below

	QueuePackets    int `json:"queue_packets"` // waiting for the link now
	QueueBytes      int `json:"queue_bytes"`
	InFlightPackets int `json:"in_flight_packets"` // on the delay line now
	InFlightBytes   int `json:"in_flight_bytes"`
}

// LinkRequest is the body of POST /v1/link.
type LinkRequest struct {
	// Dev is the NIC; "" is eth0.
	Dev string `json:"dev"`
	// Direction is "egress", "ingress", or "both" ("" too).
	Direction string `json:"direction"`
	// Spec is put in force in the text form of package shape; "" takes
	// every impairment away.
	Spec string `json:"spec"`
}
