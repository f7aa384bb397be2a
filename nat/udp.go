package nat

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/netstack"
)

// udpIdleTimeout ends a UDP flow that has been quiet this long (the common
// conntrack figure for unreplied/short flows is 30-180 s).
const udpIdleTimeout = 60 * time.Second

// maxDatagram is the largest UDP payload over IPv4/IPv6 without jumbograms.
const maxDatagram = 65535

// forwardUDP starts a flow for the first datagram of a new guest 4-tuple: a
// gateway endpoint connected to the guest and a connected host socket to
// the destination, relayed until the flow is idle. Returning false lets
// netstack answer with ICMP port unreachable. r is not used after it
// returns: its packet is only borrowed (see New).
func (g *Gateway) forwardUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst := netstack.NetipAddrPort(id.LocalAddress, id.LocalPort)
	target, ok := g.hostTarget(dst)
	if !ok {
		g.logf("nat: udp %s: refused (no host destination)", dst)
		return false
	}
	if g.isDNS(dst) {
		return g.forwardDNS(r, dst)
	}
	hc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		g.logf("nat: udp %s via %s: %v", dst, target, err)
		return false
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		hc.Close()
		g.logf("nat: udp %s: creating guest endpoint: %s", dst, terr)
		return true // the datagram is consumed either way
	}
	guest := gonet.NewUDPConn(&wq, ep)
	if !g.track(guest) || !g.track(hc) {
		guest.Close()
		hc.Close()
		return true
	}
	g.goAsync(func() {
		defer g.untrack(guest)
		defer g.untrack(hc)
		relayDatagrams(guest, hc)
	})
	return true
}

// relayDatagrams copies datagrams both ways between two connected sockets
// until neither has carried anything for udpIdleTimeout, then closes both.
func relayDatagrams(a, b net.Conn) {
	done := make(chan struct{}, 2)
	pump := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, maxDatagram)
		for {
			src.SetReadDeadline(time.Now().Add(udpIdleTimeout))
			n, err := src.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) || isClosed(err) {
					return
				}
				// ICMP errors (e.g. port unreachable) surface as read errors
				// on a connected socket; the flow goes on.
				continue
			}
			// Activity in one direction keeps the other alive too.
			dst.SetReadDeadline(time.Now().Add(udpIdleTimeout))
			if _, err := dst.Write(buf[:n]); err != nil && isClosed(err) {
				return
			}
		}
	}
	go pump(b, a)
	go pump(a, b)
	<-done
	a.Close()
	b.Close()
	<-done
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
