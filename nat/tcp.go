package nat

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/netstack"
)

// dialTimeout bounds a host connect. Past it the guest's SYN goes
// unanswered, so the guest's own SYN retries decide when it gives up.
const dialTimeout = 30 * time.Second

// copyBufSize is large so that one read drains a full window's worth of
// data from a fast peer in few system calls.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// forwardTCP handles one SYN from the guest: dial the destination on the
// host first, and only then complete the guest's handshake, so a refusing
// upstream shows as a refused connection (RST) to the guest program.
func (g *Gateway) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := netstack.NetipAddrPort(id.LocalAddress, id.LocalPort)
	target, ok := g.hostTarget(dst)
	if !ok {
		g.logf("nat: tcp %s: refused (no host destination)", dst)
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	hc, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		code, icmpOK := unreachableCode(err, id.LocalAddress.Len() == 4)
		switch {
		case icmpOK && g.sendUnreachable(id, code):
			// A route the host lacks: the guest hears it as a router's ICMP
			// error, and its connect fails with the same errno.
			r.Complete(false)
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENETUNREACH),
			errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
			// Fail fast, as the kernel would on an RST or ICMP error.
			r.Complete(true)
		default:
			// Timeouts: stay silent and let the guest's SYN retries run out.
			r.Complete(false)
		}
		g.logf("nat: tcp %s via %s: %v", dst, target, err)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		hc.Close()
		g.logf("nat: tcp %s: creating guest endpoint: %s", dst, terr)
		return
	}
	r.Complete(false)
	guest := gonet.NewTCPConn(&wq, ep)
	g.relay(guest, ep, &wq, hc.(*net.TCPConn))
}

// halfCloser is a stream that can shut down its write side.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// relay copies both ways between a gateway connection (to the guest) and a
// host connection until both directions have ended. A FIN is passed on as a
// FIN (half-close); a reset or error on either side aborts both.
func (g *Gateway) relay(guest *gonet.TCPConn, guestEP tcpip.Endpoint, guestWQ *waiter.Queue, host *net.TCPConn) {
	if !g.track(guest) || !g.track(host) {
		guest.Close()
		return
	}
	defer g.untrack(guest)
	defer g.untrack(host)
	var once sync.Once
	abort := func() {
		once.Do(func() {
			// Close, not just set linger: the other pump may be blocked
			// reading a host client that waits for us, and must wake.
			host.SetLinger(0) // RST, as the guest saw
			host.Close()
			guestEP.Abort()
		})
	}
	var wg sync.WaitGroup
	pump := func(dst, src halfCloser, readable func() error) {
		defer wg.Done()
		for {
			// The buffer is taken only once src has something, and given
			// back after each read, so an idle connection holds none.
			if err := readable(); err != nil {
				abort()
				return
			}
			bufp := copyBufs.Get().(*[]byte)
			n, err := src.Read(*bufp)
			if n > 0 {
				if _, werr := dst.Write((*bufp)[:n]); werr != nil {
					copyBufs.Put(bufp)
					abort()
					return
				}
			}
			copyBufs.Put(bufp)
			switch {
			case err == io.EOF:
				dst.CloseWrite()
				return
			case err != nil:
				abort()
				return
			}
		}
	}
	wg.Add(2)
	go pump(host, guest, func() error { return guestReadable(guestEP, guestWQ) })
	go pump(guest, host, func() error { return hostReadable(host) })
	wg.Wait()
	host.Close()
	guest.Close()
}

// guestReadable waits until the guest's endpoint has data, a FIN or an
// error for a read.
func guestReadable(ep tcpip.Endpoint, wq *waiter.Queue) error {
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	for ep.Readiness(waiter.ReadableEvents) == 0 {
		<-ch
	}
	return nil
}

// hostReadable waits until the host connection has data, a FIN or an
// error for a read; it fails once the connection is closed.
func hostReadable(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var one [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return err != unix.EAGAIN
	})
}
