package shape

import (
	"fmt"
	"strings"
)

// Stats are one direction's counters, in the manner of tc -s qdisc.
type Stats struct {
	Direction Direction
	Spec      Spec   // in force
	Seed      uint64 // of the random sequence in use

	SentPackets uint64 // released to the next layer (duplicates included)
	SentBytes   uint64

	DroppedLoss  uint64 // lost by the loss model
	DroppedQueue uint64 // found the queue full (drop-tail; overlimits), or the delay line at its bound
	DroppedAQM   uint64 // dropped early by RED or CoDel
	Duplicated   uint64
	Corrupted    uint64
	Reordered    uint64
	// Errors counts packets the lower endpoint refused when they were
	// released (egress), such as a closed link.
	Errors uint64

	QueuePackets    int // waiting for the link now
	QueueBytes      int
	InFlightPackets int // on the delay line now
	InFlightBytes   int
}

// Dropped is every packet the direction dropped.
func (s Stats) Dropped() uint64 { return s.DroppedLoss + s.DroppedQueue + s.DroppedAQM }

// String formats s like tc -s qdisc show:
//
//	egress: rate 10mbit delay 25ms seed 7
//	 Sent 1514000 bytes 1000 pkt (dropped 12: loss 10, queue 2, aqm 0; duplicated 0 corrupted 0 reordered 0 errors 0)
//	 backlog 3028b 2p queued, 30280b 20p in flight
func (s Stats) String() string {
	var b strings.Builder
	spec := s.Spec.String()
	if !s.Spec.HasSeed {
		spec = strings.TrimSpace(spec + fmt.Sprintf(" (seed %d)", s.Seed))
	}
	fmt.Fprintf(&b, "%s: %s\n", s.Direction, spec)
	fmt.Fprintf(&b, " Sent %d bytes %d pkt (dropped %d: loss %d, queue %d, aqm %d; duplicated %d corrupted %d reordered %d errors %d)\n",
		s.SentBytes, s.SentPackets, s.Dropped(), s.DroppedLoss, s.DroppedQueue, s.DroppedAQM, s.Duplicated, s.Corrupted, s.Reordered, s.Errors)
	fmt.Fprintf(&b, " backlog %db %dp queued, %db %dp in flight", s.QueueBytes, s.QueuePackets, s.InFlightBytes, s.InFlightPackets)
	return b.String()
}
