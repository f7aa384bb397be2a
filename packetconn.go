package ustack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/netstack"
)

// packetConn is a datagram socket (UDP or ICMP echo) on the user-level
// stack. It implements net.Conn and net.PacketConn.
type packetConn struct {
	network string
	wq      *waiter.Queue
	ep      tcpip.Endpoint
	icmp    bool
	v6      bool // an IPv6 endpoint; IPv4 peers are reached via mapped addresses

	mu            sync.Mutex
	readDeadline  time.Time
	writeDeadline time.Time
}

func newPacketConn(network string, wq *waiter.Queue, ep tcpip.Endpoint, netProto tcpip.NetworkProtocolNumber, icmp bool) *packetConn {
	return &packetConn{network: network, wq: wq, ep: ep, icmp: icmp, v6: netProto == ipv6.ProtocolNumber}
}

func (c *packetConn) addr(f tcpip.FullAddress) net.Addr {
	ap := netstack.NetipAddrPort(f.Addr, f.Port)
	if c.icmp {
		return &net.IPAddr{IP: ap.Addr().AsSlice()}
	}
	return net.UDPAddrFromAddrPort(ap)
}

func (c *packetConn) opErr(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: c.network, Source: c.LocalAddr(), Addr: addr, Err: err}
}

// wait blocks until the endpoint signals mask, the deadline passes, or the
// deadline is changed (SetDeadline notifies the queue to wake waiters).
func (c *packetConn) wait(mask waiter.EventMask, deadline func() time.Time, try func() bool) error {
	entry, notify := waiter.NewChannelEntry(mask)
	c.wq.EventRegister(&entry)
	defer c.wq.EventUnregister(&entry)
	for {
		if try() {
			return nil
		}
		var timeout <-chan time.Time
		if d := deadline(); !d.IsZero() {
			left := time.Until(d)
			if left <= 0 {
				return errTimeout
			}
			t := time.NewTimer(left)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-notify:
		case <-timeout:
			return errTimeout
		}
	}
}

func (c *packetConn) deadline(write bool) func() time.Time {
	return func() time.Time {
		c.mu.Lock()
		defer c.mu.Unlock()
		if write {
			return c.writeDeadline
		}
		return c.readDeadline
	}
}

// ReadFrom implements net.PacketConn. A datagram longer than b is
// truncated, as with the kernel's recvfrom.
func (c *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	var res tcpip.ReadResult
	var terr tcpip.Error
	w := tcpip.SliceWriter(b)
	err := c.wait(waiter.ReadableEvents, c.deadline(false), func() bool {
		if d := c.deadline(false)(); !d.IsZero() && !time.Now().Before(d) {
			terr = nil
			return false
		}
		w = tcpip.SliceWriter(b)
		res, terr = c.ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
		_, block := terr.(*tcpip.ErrWouldBlock)
		return !block
	})
	if err != nil {
		return 0, nil, c.opErr("read", nil, err)
	}
	if _, ok := terr.(*tcpip.ErrClosedForReceive); ok {
		return 0, nil, c.opErr("read", nil, net.ErrClosed)
	}
	if terr != nil {
		return 0, nil, c.opErr("read", nil, errnoOf(terr))
	}
	return res.Count, c.addr(res.RemoteAddr), nil
}

// Read implements net.Conn.
func (c *packetConn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFrom(b)
	return n, err
}

// WriteTo implements net.PacketConn.
func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	var dst netip.AddrPort
	switch a := addr.(type) {
	case *net.UDPAddr:
		dst = a.AddrPort()
	case *net.IPAddr:
		if a == nil {
			break
		}
		ip, _ := netip.AddrFromSlice(a.IP)
		dst = netip.AddrPortFrom(ip, 0)
	case nil:
		return 0, c.opErr("write", nil, errors.New("missing destination address"))
	default:
		return 0, c.opErr("write", addr, errors.New("unsupported address type "+addr.Network()))
	}
	if !dst.Addr().IsValid() {
		return 0, c.opErr("write", addr, errors.New("invalid destination address"))
	}
	to := netstack.FullAddress(netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()))
	if c.v6 && dst.Addr().Unmap().Is4() {
		// A dual-stack socket reaches IPv4 peers through mapped addresses.
		to.Addr = netstack.Address(netip.AddrFrom16(dst.Addr().As16()))
	}
	return c.write(b, &to, addr)
}

// Write implements net.Conn for connected sockets.
func (c *packetConn) Write(b []byte) (int, error) { return c.write(b, nil, c.RemoteAddr()) }

func (c *packetConn) write(b []byte, to *tcpip.FullAddress, addr net.Addr) (int, error) {
	var n int64
	var terr tcpip.Error
	var r bytes.Reader
	err := c.wait(waiter.WritableEvents, c.deadline(true), func() bool {
		r.Reset(b)
		n, terr = c.ep.Write(&r, tcpip.WriteOptions{To: to})
		_, block := terr.(*tcpip.ErrWouldBlock)
		return !block
	})
	if err != nil {
		return 0, c.opErr("write", addr, err)
	}
	if terr != nil {
		if _, ok := terr.(*tcpip.ErrClosedForSend); ok {
			return 0, c.opErr("write", addr, net.ErrClosed)
		}
		return int(n), c.opErr("write", addr, errnoOf(terr))
	}
	return int(n), nil
}

// Close implements net.Conn.
func (c *packetConn) Close() error {
	c.ep.Close()
	return nil
}

// LocalAddr implements net.Conn.
func (c *packetConn) LocalAddr() net.Addr {
	a, err := c.ep.GetLocalAddress()
	if err != nil {
		return nil
	}
	return c.addr(a)
}

// RemoteAddr implements net.Conn; nil for an unconnected socket.
func (c *packetConn) RemoteAddr() net.Addr {
	a, err := c.ep.GetRemoteAddress()
	if err != nil {
		return nil
	}
	return c.addr(a)
}

func (c *packetConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *packetConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	c.wq.Notify(waiter.ReadableEvents) // blocked readers re-check the deadline
	return nil
}

func (c *packetConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	c.wq.Notify(waiter.WritableEvents)
	return nil
}

var _ io.ReadWriteCloser = (*packetConn)(nil)
