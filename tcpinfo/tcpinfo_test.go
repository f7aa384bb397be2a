package tcpinfo

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

func TestLostSegments(t *testing.T) {
	block := func(start, end seqnum.Value) header.SACKBlock { return header.SACKBlock{Start: start, End: end} }
	for _, tc := range []struct {
		name     string
		blocks   []header.SACKBlock
		recovery bool // fast recovery active
		afterRTO bool
		inFlight int
		want     uint32
	}{
		{name: "nothing SACKed", want: 0},
		{name: "NewReno fast recovery", recovery: true, want: 1},
		{name: "after an RTO", afterRTO: true, inFlight: 7, want: 7},
		{name: "3 MSS SACKed above a hole", blocks: []header.SACKBlock{block(2000, 5000)}, want: 1},
		{name: "2 MSS SACKed above a hole", blocks: []header.SACKBlock{block(2000, 4000)}, want: 0},
		{name: "3 blocks above the first hole only", blocks: []header.SACKBlock{block(2000, 2500), block(3000, 3500), block(4000, 4500)}, want: 1},
		{name: "a hole of 2.5 MSS", blocks: []header.SACKBlock{block(3500, 6500)}, want: 3},
		{name: "a block below snd.una", blocks: []header.SACKBlock{block(0, 500), block(2000, 5000)}, want: 1},
		{name: "a block straddling snd.una", blocks: []header.SACKBlock{block(500, 1500), block(2000, 5000)}, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st tcp.TCPEndpointState
			st.Sender.SndUna = 1000
			st.Sender.MaxPayloadSize = 1000
			st.Sender.Outstanding = tc.inFlight
			st.Sender.FastRecovery.Active = tc.recovery
			st.SACK.ReceivedBlocks = tc.blocks
			if got := Lost(&st, tc.afterRTO); got != tc.want {
				t.Errorf("lost %d, want %d", got, tc.want)
			}
		})
	}
}
