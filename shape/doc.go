// Package shape emulates a link's impairments — rate, queue, delay and
// jitter, loss, duplication, corruption and reordering — on any netstack
// link endpoint, with netem's vocabulary and semantics.
//
// An Endpoint wraps a lower link endpoint and shapes both directions, each
// with its own Spec; either may be empty (pass-through, a few nanoseconds
// per packet). Specs change live with Set; Stats returns counters like
// tc -s qdisc, Sojourn the distribution of the time packets waited in the
// queue (from the emulator's schedule, so a busy machine does not inflate
// it).
//
//	ep, err := shape.New(lower, clock, egress, ingress)
//	ep.Set(shape.Egress, spec)
//	fmt.Println(ep.Stats(shape.Egress))
//
// # Text form
//
// A spec is a list of keywords with values, in any order, as on a tc
// command line:
//
//	rate 10mbit delay 20ms 5ms distribution normal loss 1% duplicate 0.1% corrupt 0.01% reorder 25% gap 5 limit 1000 seed 7
//
//	rate R [OVERHEAD [CELLSIZE [CELLOVERHEAD]]]
//	                        link rate: bit, kbit, mbit, gbit, tbit (×1000), kibit, mibit...
//	                        (×1024), or bytes per second: bps, kbps, mbps, gbps
//	overhead B              bytes added to each packet for the rate (may be negative;
//	                        24 counts Ethernet's preamble, FCS and gap)
//	cellsize C              round each packet up to cells of C bytes ...
//	celloverhead B          ... each C+B bytes on the wire
//	limit N                 queue in front of the rate: N packets (default 1000), drop-tail
//	bytes SIZE              ... and at most SIZE bytes: b, kb, mb (kb = 1024 bytes, as in tc)
//	queue red MIN MAX P     RED on the average queue (weight 0.002): thresholds in packets
//	                        (20 60) or bytes (30kb 90kb), drop probability P at MAX
//	queue codel [target T] [interval I]
//	                        CoDel (RFC 8289), target 5ms and interval 100ms by default
//	delay T [JITTER]        one-way delay, optionally varied by ±JITTER: s, ms, us, ns
//	distribution D          shape of the jitter: uniform (default), normal, pareto, paretonormal
//	jitter-reorder          let jitter reorder packets (by default it never does)
//	loss P                  random loss; also loss random P
//	loss gemodel P [R [1-H [1-K]]]
//	                        Gilbert-Elliott: good→bad P, bad→good R (default 1-P), loss in
//	                        the bad state 1-H (default 100%), in the good state 1-K (default 0%)
//	loss state P13 [P31 [P32 [P23 [P14]]]]
//	                        netem's 4-state model (defaults: P31 = 1-P13, P32 0%, P23 100%, P14 0%)
//	duplicate P             send a packet twice
//	corrupt P               flip one random bit of a packet
//	reorder P [gap N]       once N-1 packets have been delayed, send each further one at
//	                        once (no delay, head of the queue) with probability P; gap
//	                        defaults to 1
//	seed S                  seed of the direction's random numbers, so a run repeats
//
// Units are case-insensitive. Probabilities take a % sign and times a
// unit; a value without one is an error that says what to write (netem's correlation values are refused:
// use the Markov loss models for bursty loss). The empty text is the zero
// Spec. Spec.String writes this form back.
//
// # Semantics
//
// Each direction is Dummynet's pipe — a queue, a link that sends at the
// rate, and a delay line — with netem's per-packet decisions as a packet
// arrives, in netem's order:
//
//  1. duplicate: with probability P the packet is copied;
//  2. loss: the loss model decides; as in netem, a loss takes one of the
//     copies, and the copy then meets the loss model once more on its own;
//  3. corrupt: one bit of a copy of the packet is flipped (super-frames are
//     left whole);
//  4. queue: with a rate, the packet joins the queue unless RED drops it or
//     the queue is at limit/bytes (drop-tail);
//  5. reorder: after gap-1 packets, with probability P the packet skips the
//     delay and goes to the head of the queue;
//  6. delay: a delay is drawn, Delay + jitter from the distribution (never
//     below zero);
//  7. rate: when the link is free the head of the queue leaves (CoDel may
//     drop it then) and occupies the link for (len+overhead)·8/rate, cells
//     counted; then it spends its delay in the delay line.
//
// A packet's length is its whole frame as it passes the Endpoint (no
// preamble or FCS unless overhead adds them).
//
// Differences from netem, on purpose:
//
//   - netem's limit counts every packet it holds, including those still in
//     their delay, so a long delay at a high rate needs a huge limit and the
//     limit is no model of a router's buffer. Here limit and bytes bound only
//     the queue in front of the rate (a bottleneck's buffer); the delay line
//     holds what is in flight, bounded only against runaway memory (262144
//     packets or 256 MiB, counted as queue drops). Without a rate there is
//     no queue, and limit, bytes and queue are refused.
//   - netem's rate serialises after the delay, with jitter drawn before it;
//     here the link serialises first and jitter is added on the wire, so
//     jitter never lowers the rate. With a constant delay both give the
//     same departure times.
//   - Jitter keeps packets in order by default (a packet that drew a shorter
//     delay waits for the one ahead of it), like netem with a rate or with a
//     FIFO child qdisc; jitter-reorder lets them pass, like netem without a
//     rate. The default is order-preserving because a single link does not
//     reorder, and because jitter larger than the gap between packets
//     otherwise reorders most of a TCP flow, which is rarely what the
//     experiment meant (reorder exists for that).
//   - A reordered packet still waits for the link: it goes to the head of
//     the queue and skips only the delay.
//   - corrupt flips a bit anywhere in the frame, not only in the linear
//     header area of the socket buffer, and always in a copy, so a
//     retransmission is not corrupted too. While the egress spec corrupts,
//     the stack is told not to offload checksums, and a corrupted received
//     packet has its checksums verified, so a corrupted packet is caught as
//     on a real link.
//   - Correlation values, slot, ECN marking and loss traces are not
//     supported.
//   - The default distribution is uniform, as netem's is without a table.
//
// Changing a spec (Set) applies to packets from then on; packets inside
// keep the delay and fate decided on arrival, and those still queued are
// sent at the new rate. While a direction holds packets, new ones go
// through it even if the new spec is empty, so order is kept.
package shape
