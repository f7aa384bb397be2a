package nat

import (
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// dnsTryTimeout is how long one upstream resolver gets to answer a query
// before the next is asked (glibc's resolver waits 5 s per server; a
// shorter wait keeps a dead first server from stalling every lookup).
const dnsTryTimeout = 2 * time.Second

func (g *Gateway) isDNS(dst netip.AddrPort) bool {
	a := dst.Addr()
	return dst.Port() == 53 && a.IsValid() && (a == g.cfg.DNS4 || a == g.cfg.DNS6) && len(g.cfg.DNSUpstreams) > 0
}

// forwardDNS serves a guest's UDP DNS flow: each query goes to the
// upstream resolvers in order until one answers, so a dead first
// nameserver in resolv.conf costs a delay, not the lookup.
func (g *Gateway) forwardDNS(r *udp.ForwarderRequest, dst netip.AddrPort) bool {
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		g.logf("nat: dns %s: creating guest endpoint: %s", dst, terr)
		return true
	}
	guest := gonet.NewUDPConn(&wq, ep)
	if !g.track(guest) {
		guest.Close()
		return true
	}
	upstreams := g.cfg.DNSUpstreams
	g.goAsync(func() {
		defer g.untrack(guest)
		defer guest.Close()
		buf := make([]byte, maxDatagram)
		for {
			guest.SetReadDeadline(time.Now().Add(udpIdleTimeout))
			n, err := guest.Read(buf)
			if err != nil {
				if isTimeout(err) || isClosed(err) || g.ctx.Err() != nil {
					return
				}
				continue
			}
			query := append([]byte(nil), buf[:n]...)
			g.goAsync(func() {
				if answer := g.askUpstreams(query, upstreams); answer != nil {
					guest.Write(answer)
				}
			})
		}
	})
	return true
}

// askUpstreams returns the first answer any upstream gives to query, or nil.
func (g *Gateway) askUpstreams(query []byte, upstreams []netip.AddrPort) []byte {
	buf := make([]byte, maxDatagram)
	for _, up := range upstreams {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(up))
		if err != nil {
			continue
		}
		if !g.track(c) {
			return nil
		}
		c.SetDeadline(time.Now().Add(dnsTryTimeout))
		_, err = c.Write(query)
		var n int
		for err == nil {
			n, err = c.Read(buf)
			// Only an answer to this query (same ID) counts.
			if err == nil && n >= 2 && buf[0] == query[0] && buf[1] == query[1] {
				break
			}
		}
		g.untrack(c)
		c.Close()
		if err == nil {
			return buf[:n]
		}
		g.logf("nat: dns upstream %s: %v", up, err)
	}
	return nil
}
