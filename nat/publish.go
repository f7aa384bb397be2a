package nat

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/internal/growstack"
	"github.com/ustack/ustack/netstack"
)

// publish opens the host side of a published port.
func (g *Gateway) publish(p Publish) error {
	host := ""
	if p.HostAddr.IsValid() {
		host = p.HostAddr.String()
	}
	addr := net.JoinHostPort(host, fmt.Sprint(p.HostPort))
	if p.Proto == "udp" {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		g.track(pc)
		g.goAsync(func() { g.serveUDPPublish(p, pc) })
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	g.track(ln)
	g.goAsync(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Close
			}
			g.goAsync(func() { g.serveTCPPublish(p, c.(*net.TCPConn)) })
		}
	})
	return nil
}

// guestSide picks the guest address a published connection goes to and the
// source it appears to come from. The client's own address is kept when the
// guest can route back to it; a loopback client (or one of a family the
// guest lacks) appears as the host alias instead, like slirp's 10.0.2.2.
func (g *Gateway) guestSide(client netip.AddrPort) (src, dst tcpip.FullAddress, proto tcpip.NetworkProtocolNumber, ok bool) {
	c := client.Addr().Unmap()
	preserve := !c.IsLoopback() && !c.IsUnspecified() && !c.IsLinkLocalUnicast()
	switch {
	case c.Is4() && g.cfg.Guest4.IsValid() || !g.cfg.Guest6.IsValid() && g.cfg.Guest4.IsValid():
		dst = tcpip.FullAddress{Addr: netstack.Address(g.cfg.Guest4)}
		proto = ipv4.ProtocolNumber
		if !c.Is4() {
			preserve = false
		}
		if preserve {
			src = tcpip.FullAddress{Addr: netstack.Address(c), Port: client.Port()}
		} else {
			src = tcpip.FullAddress{Addr: netstack.Address(g.cfg.Gateway4)}
		}
	case g.cfg.Guest6.IsValid():
		dst = tcpip.FullAddress{Addr: netstack.Address(g.cfg.Guest6)}
		proto = ipv6.ProtocolNumber
		if !c.Is6() {
			preserve = false
		}
		if preserve {
			src = tcpip.FullAddress{Addr: netstack.Address(c), Port: client.Port()}
		} else {
			src = tcpip.FullAddress{Addr: netstack.Address(g.cfg.Gateway6)}
		}
	default:
		return src, dst, 0, false
	}
	return src, dst, proto, true
}

// serveTCPPublish connects one host client to the published guest port.
func (g *Gateway) serveTCPPublish(p Publish, c *net.TCPConn) {
	growstack.Grow() // the connect goes deep into both stacks
	src, dst, proto, ok := g.guestSide(c.RemoteAddr().(*net.TCPAddr).AddrPort())
	if !ok {
		c.Close()
		return
	}
	dst.Port = p.GuestPort
	ctx, cancel := context.WithTimeout(g.ctx, dialTimeout)
	defer cancel()
	var wq waiter.Queue
	ep, terr := g.ns.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		c.Close()
		return
	}
	if err := dialFrom(ctx, ep, &wq, src, dst); err != nil {
		// Nobody listens in the guest: reset the client, as a closed port would.
		g.logf("nat: published %s: %v", p, err)
		c.SetLinger(0)
		c.Close()
		return
	}
	g.relay(ep, &wq, c)
}

// dialFrom connects ep from src (which the gateway may not own: spoofing is
// on) to dst.
func dialFrom(ctx context.Context, ep tcpip.Endpoint, wq *waiter.Queue, src, dst tcpip.FullAddress) error {
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	if terr := ep.Bind(src); terr != nil {
		ep.Close()
		return fmt.Errorf("bind %s: %s", src.Addr, terr)
	}
	terr := ep.Connect(dst)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Close()
			return ctx.Err()
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return fmt.Errorf("connect %s:%d: %s", dst.Addr, dst.Port, terr)
	}
	return nil
}

// udpSession is one host client of a published UDP port.
type udpSession struct {
	guest *gonet.UDPConn
}

// serveUDPPublish relays datagrams between host clients of a published UDP
// port and the guest, one gateway socket per client so the guest sees each
// client as a distinct peer.
func (g *Gateway) serveUDPPublish(p Publish, pc net.PacketConn) {
	var mu sync.Mutex
	sessions := map[netip.AddrPort]*udpSession{}
	defer func() {
		mu.Lock()
		for _, s := range sessions {
			s.guest.Close()
		}
		mu.Unlock()
	}()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue
		}
		client := from.(*net.UDPAddr).AddrPort()
		mu.Lock()
		s := sessions[client]
		if s == nil {
			s = g.newUDPSession(p, pc, client, func() {
				mu.Lock()
				delete(sessions, client)
				mu.Unlock()
			})
			if s != nil {
				sessions[client] = s
			}
		}
		mu.Unlock()
		if s != nil {
			s.guest.Write(buf[:n])
		}
	}
}

func (g *Gateway) newUDPSession(p Publish, pc net.PacketConn, client netip.AddrPort, done func()) *udpSession {
	src, dst, proto, ok := g.guestSide(client)
	if !ok {
		return nil
	}
	dst.Port = p.GuestPort
	conn, err := gonet.DialUDP(g.ns, &src, &dst, proto)
	if err != nil {
		g.logf("nat: published %s for %s: %v", p, client, err)
		return nil
	}
	s := &udpSession{guest: conn}
	to := net.UDPAddrFromAddrPort(client)
	g.goAsync(func() {
		defer done()
		defer conn.Close()
		buf := make([]byte, maxDatagram)
		for {
			conn.SetReadDeadline(time.Now().Add(udpIdleTimeout))
			n, err := conn.Read(buf)
			if err != nil {
				if isTimeout(err) || isClosed(err) || g.ctx.Err() != nil {
					return
				}
				continue
			}
			pc.WriteTo(buf[:n], to)
		}
	})
	return s
}
