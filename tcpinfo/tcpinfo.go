// Package tcpinfo works out the values of Linux's struct tcp_info that
// netstack does not keep, from the state its TCP probe reports and the
// bytes a program moved. ss -i (package inspect) and the TCP_INFO a program
// reads under ustack run (package sockets) both use it, so they agree.
package tcpinfo

import (
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// AckedSent returns tcpi_bytes_acked and tcpi_bytes_sent of an
// established (or closing) connection whose program wrote written bytes,
// given the probe's latest state, the TCP state and the segments
// retransmitted. The data acknowledged is what was written less the
// sample's send queue (exact while no write came after the last segment
// received); bytes_acked adds one for our SYN and one for our FIN once
// acknowledged, as Linux counts them. bytes_sent is data only: what was
// acknowledged, plus the bytes in flight, plus the retransmissions counted
// as whole segments.
func AckedSent(written uint64, st *tcp.TCPEndpointState, state tcp.EndpointState, retrans uint64) (acked, sent uint64) {
	queued := uint64(max(st.SndBufState.SndBufUsed, 0))
	data := written - min(written, queued)
	acked = data + 1 // the SYN
	inFlight := uint64(st.Sender.SndUna.Size(st.Sender.SndNxt))
	switch state {
	case tcp.StateFinWait1, tcp.StateClosing, tcp.StateLastAck:
		inFlight -= min(inFlight, 1) // our FIN takes a sequence number
	case tcp.StateFinWait2, tcp.StateTimeWait:
		acked++ // our FIN, acknowledged
	}
	return acked, data + inFlight + retrans*uint64(st.Sender.MaxPayloadSize)
}

// dupThresh is RFC 6675's DupThresh, the reordering a SACK sender
// tolerates before it calls a segment lost.
const dupThresh = 3

// Lost estimates the segments in flight that the sender considers
// lost, Linux's tcpi_lost; netstack keeps no such count. After an RTO every
// outstanding segment is lost, as Linux marks them. Otherwise each segment
// in a hole of the peer's SACK scoreboard counts when RFC 6675's IsLost
// holds for it: DupThresh SACKed blocks above it, or more than
// (DupThresh-1)*SMSS SACKed bytes. Without SACK, fast recovery has lost
// the one segment it retransmits.
func Lost(c *tcp.TCPEndpointState, afterRTO bool) uint32 {
	snd := &c.Sender
	if afterRTO {
		return uint32(max(snd.Outstanding, 0))
	}
	mss := snd.MaxPayloadSize
	blocks := c.SACK.ReceivedBlocks // ascending, as the scoreboard keeps them
	if len(blocks) == 0 || mss <= 0 {
		if snd.FastRecovery.Active {
			return 1
		}
		return 0
	}
	var sackedAbove int
	for _, b := range blocks {
		if snd.SndUna.LessThan(b.End) {
			sackedAbove += int(b.Start.Size(b.End))
		}
	}
	blocksAbove := len(blocks)
	var lost uint32
	next := snd.SndUna // the first byte not yet known to be received
	for _, b := range blocks {
		if !next.LessThan(b.End) {
			blocksAbove--
			continue
		}
		if next.LessThan(b.Start) && (blocksAbove >= dupThresh || sackedAbove > (dupThresh-1)*mss) {
			hole := int(next.Size(b.Start))
			lost += uint32((hole + mss - 1) / mss)
		}
		sackedAbove -= int(b.Start.Size(b.End))
		blocksAbove--
		next = b.End
	}
	return lost
}
