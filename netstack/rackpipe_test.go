package netstack

import (
	"context"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// In fast recovery a sender keeps no more segments in flight than its
// congestion window. RACK's recovery resends the segments it marks lost one
// after another; the pinned netstack stopped counting each of them as in
// flight (RFC 6675's pipe) on the next ACK, so every ACK of the recovery
// let it send as many segments again, and on a drop-tail link the surplus
// was dropped: a slow start's overshoot cost several window reductions in
// a row (cc/sidebyside's CUBIC kept its queue under half the buffer).
//
// The test is the sender's peer and its link: it reads each segment the
// stack sends, drops the first transmission of the first 20 of a flight of
// 30, and acknowledges with SACK one more of the rest per ACK, as a
// receiver does. After each ACK it counts what is really in flight (sent,
// not dropped, not acknowledged) against the window the stack reports. The
// stack runs on a manual clock: no timer fires, and each segment of the
// flight gets a send time of its own, as on a real clock.
func TestRACKRecoveryKeepsFlightWithinWindow(t *testing.T) {
	const (
		mss     = 1000
		flight  = 30
		dropped = 20
	)
	stackAddr := tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	peerAddr := tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	const stackPort, peerPort = 80, 40000

	// The sender's state after each segment the stack processed.
	type sender struct {
		cwnd, outstanding, payload int
		recovery                   bool
	}
	samples := make(chan sender, 1024)
	probe := func(st *tcp.TCPEndpointState) {
		if st.ID.LocalPort == stackPort && st.ID.RemotePort == peerPort {
			samples <- sender{st.Sender.SndCwnd, st.Sender.Outstanding, st.Sender.MaxPayloadSize, st.Sender.FastRecovery.Active}
		}
	}
	clock := faketime.NewManualClock()
	s, err := NewClocked(TCPOptions{CongestionControl: "reno", InitialCwnd: 40}, probe, clock, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Destroy)
	link := channel.New(256, 1500, "")
	t.Cleanup(link.Close)
	if err := s.CreateNIC(1, link); err != nil {
		t.Fatalf("CreateNIC: %s", err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: stackAddr.WithPrefix()}
	if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		t.Fatalf("AddProtocolAddress: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})

	ln, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: 1, Addr: stackAddr, Port: stackPort}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// send injects a segment from the peer.
	send := func(flags header.TCPFlags, seq, ack seqnum.Value, opts []byte) {
		tcpLen := header.TCPMinimumSize + len(opts)
		b := make([]byte, header.IPv4MinimumSize+tcpLen)
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(tcp.ProtocolNumber), SrcAddr: peerAddr, DstAddr: stackAddr})
		ip.SetChecksum(^ip.CalculateChecksum())
		h := header.TCP(b[header.IPv4MinimumSize:])
		h.Encode(&header.TCPFields{SrcPort: peerPort, DstPort: stackPort, SeqNum: uint32(seq), AckNum: uint32(ack),
			DataOffset: uint8(tcpLen), Flags: flags, WindowSize: 0xffff})
		copy(h[header.TCPMinimumSize:], opts)
		h.SetChecksum(^h.CalculateChecksum(header.PseudoHeaderChecksum(tcp.ProtocolNumber, peerAddr, stackAddr, uint16(tcpLen))))
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		link.InjectInbound(ipv4.ProtocolNumber, pkt)
		pkt.DecRef()
	}
	// next is the next segment the stack sends.
	next := func() header.TCP {
		t.Helper()
		pkt := link.ReadContext(ctx)
		if pkt == nil {
			t.Fatal("no segment from the stack within the test's deadline")
		}
		defer pkt.DecRef()
		v := pkt.ToView()
		defer v.Release()
		return header.TCP(append([]byte(nil), header.IPv4(v.AsSlice()).Payload()...))
	}

	// Handshake: the peer offers SACK and a 1000-byte MSS.
	peerISN := seqnum.Value(1000)
	opts := make([]byte, 8)
	header.EncodeMSSOption(mss, opts)
	header.EncodeSACKPermittedOption(opts[4:])
	header.EncodeNOP(opts[6:])
	header.EncodeNOP(opts[7:])
	send(header.TCPFlagSyn, peerISN, 0, opts)
	synAck := next()
	if synAck.Flags() != header.TCPFlagSyn|header.TCPFlagAck {
		t.Fatalf("answer to SYN has flags %s, want SYN|ACK", synAck.Flags())
	}
	data := seqnum.Value(synAck.SequenceNumber()) + 1
	send(header.TCPFlagAck, peerISN+1, data, nil)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A reset ends the connection with its flight unacknowledged, so
		// that the stack frees it.
		send(header.TCPFlagRst|header.TCPFlagAck, peerISN+1, data, nil)
		c.Close()
	})

	// The flight, one full segment per write, a microsecond apart.
	var seg int // netstack's payload per segment
	select {
	case st := <-samples:
		seg = st.payload
	case <-ctx.Done():
		t.Fatal("the stack reported no established connection within the test's deadline")
	}
	payload := make([]byte, seg)
	for i := 0; i < flight; i++ {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		if h := next(); h.SequenceNumber() != uint32(data.Add(seqnum.Size(i*seg))) || len(h.Payload()) != seg {
			t.Fatalf("segment %d: seq %d len %d, want seq %d len %d", i, h.SequenceNumber(), len(h.Payload()), data.Add(seqnum.Size(i*seg)), seg)
		}
		clock.Advance(time.Microsecond)
	}
	// Drain the samples of the handshake.
	for len(samples) > 0 {
		<-samples
	}

	// The peer has the flight's segments [dropped, flight) but not the
	// first dropped ones: one duplicate ACK per segment it receives, its
	// SACK block growing. Each ACK that makes the stack send is followed
	// by what it sent; retransmissions are in flight until acknowledged,
	// as are the segments the peer has not yet received.
	inFlight := flight - dropped
	sacked := 0
	var last sender
	for got := dropped; got < flight; got++ {
		sacked++
		inFlight--
		opts := make([]byte, 12)
		header.EncodeNOP(opts)
		header.EncodeNOP(opts[1:])
		header.EncodeSACKBlocks([]header.SACKBlock{{Start: data.Add(seqnum.Size(dropped * seg)), End: data.Add(seqnum.Size((got + 1) * seg))}}, opts[2:])
		clock.Advance(time.Microsecond)
		send(header.TCPFlagAck, peerISN+1, data, opts)
		var st sender
		select {
		case st = <-samples:
		case <-ctx.Done():
			t.Fatal("the stack reported no state after an ACK within the test's deadline")
		}
		for {
			pkt := link.Read()
			if pkt == nil {
				break
			}
			pkt.DecRef()
			inFlight++
		}
		last = st
		if inFlight > st.cwnd {
			t.Errorf("after the ACK of segment %d (SACKed %d, recovery %v): %d segments in flight, congestion window %d (netstack counts %d in flight)",
				got, sacked, st.recovery, inFlight, st.cwnd, st.outstanding)
		}
	}
	// With 20 segments to resend the recovery has no reason to leave any
	// of its window unused.
	if !last.recovery || inFlight != last.cwnd {
		t.Errorf("after the last ACK: recovery %v, %d segments in flight, want the congestion window's %d", last.recovery, inFlight, last.cwnd)
	}
}
