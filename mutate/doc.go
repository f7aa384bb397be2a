// Package mutate changes, drops, delays, duplicates and injects frames on
// any netstack link endpoint, by rules: a middlebox in a stack's NIC, and
// the three misbehaving TCP receivers of Savage, Cardwell, Wetherall and
// Anderson ("TCP Congestion Control with a Misbehaving Receiver", CCR
// 29(5), 1999), which a receiving stack plays by mutating its own ACKs.
//
//	ep, err := mutate.New(lower, clock, header.EthernetMinimumSize, rules)
//	ep.Set(rules)
//	fmt.Println(ep.Stats())
//
// # Rules
//
// One rule is one line of words (one --mutate flag); several rules apply
// in the order given, each to the frame as the rules before it left it,
// and a rule that drops the frame ends the list for it:
//
//	[in|out] [tcp|udp|icmp|ip] [src PREFIX] [dst PREFIX] [sport P[-P]] [dport P[-P]]
//	         [port P[-P]] [flags LETTERS[/MASK]] [seq A-B] ACTION [prob P%]
//
// out (the default) looks at the frames the stack sends, in at those it
// receives. The matches are all optional and must all hold: src and dst
// take an address or a prefix; port matches either port; flags takes TCP
// flag letters F S R P A U E C that must be set, and after / those that
// must be considered (S/SA: SYN set, ACK clear); seq is a range of TCP
// sequence numbers. prob acts on each matching frame with that
// probability (default 100%). Actions:
//
//	drop                  the frame does not go on
//	delay D               it goes D later (e.g. 50ms); frames behind it may pass it
//	duplicate N           N copies follow it
//	rewrite FIELD=VALUE…  set ttl (hop limit), tos (traffic class), window, or a
//	                      TCP flag fin syn rst psh ack urg ece cwr (=1 or =0);
//	                      checksums are recomputed. window is in bytes (up to
//	                      2^30): the field gets it shifted by the sender's
//	                      window scale when both SYNs offered one (RFC 7323),
//	                      as learned from the handshake, capped at 65535; a SYN's
//	                      window, and one on a connection whose handshake the
//	                      mutator did not see, is not scaled
//	inject rst            the frame goes on, followed by a reset to its
//	                      receiver, and a reset goes back to its sender (a
//	                      reset-injecting middlebox)
//
// The misbehaving receiver's actions apply to the TCP ACKs the stack sends
// that acknowledge new data (the handshake's ACK and duplicate ACKs pass
// untouched); the words may be written KEY=N or KEY N:
//
//	ack-division=M     ACK division: each such ACK becomes M ACKs that split the
//	                   newly acknowledged range into M near-equal parts, the last
//	                   being the ACK itself (M 2-64). A sender that grows its
//	                   window per ACK grows it M times as fast.
//	dupack=K           DupACK spoofing: K copies of each such ACK follow it (K
//	                   1-64), driving the sender into fast recovery and
//	                   inflating its window by one segment per duplicate.
//	optimistic-ack=N   optimistic ACKing: each such ACK is followed by N ACKs
//	                   one segment apart beyond it (N 1-1024), for data not yet
//	                   received, a segment being the largest payload received on
//	                   the connection so far. They reach the sender just after
//	                   the true ACK, when it has sent what that ACK let it send,
//	                   so it takes them as acknowledging that data: the ACK
//	                   clock runs N segments ahead. (ACKs for data the sender
//	                   has not sent are dropped by it, so a fixed lead on the
//	                   true ACK would fail against a receiver that acknowledges
//	                   a whole flight at once, as netstack's does.) Nothing is
//	                   added once the peer's FIN has arrived, so the connection
//	                   can close. A segment lost in the acknowledged lead is
//	                   never resent: the attack gives up reliability, as in the
//	                   paper.
//
// Rules see whole frames; frames that are not IP (ARP) pass untouched, and
// frames that claim to be IP but whose headers do not hold together pass
// untouched too (counted in Stats.Malformed), for the receiving stack to
// count and drop. While rules are in force the endpoint asks the stack for
// full checksums and no GSO, so rules see and rewrite wire segments.
//
// Errors from Parse are one line naming the word and the fix.
//
// # Counters
//
// Stats gives each rule's matched (frames its matches selected), acted
// (frames it acted on: after prob, and for the misbehaviours only ACKs of
// new data) and injected (frames it added: copies, ACKs, resets).
package mutate
