package nat

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/internal/nbio"
	"github.com/ustack/ustack/netstack"
)

// udpIdleTimeout ends a UDP flow that has been quiet this long (the common
// conntrack figure for unreplied/short flows is 30-180 s).
const udpIdleTimeout = 60 * time.Second

// udpGatewayBuffer is the receive buffer of the gateway's end of a flow.
const udpGatewayBuffer = 4 << 20

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
	// The guest's datagrams wait here only while the host socket is full
	// or the sender is descheduled: room for a burst, so that one the host
	// could take is not dropped at the gateway.
	ep.SocketOptions().SetReceiveBufferSize(udpGatewayBuffer, true)
	guest := gonet.NewUDPConn(&wq, ep)
	if !g.track(guest) || !g.track(hc) {
		guest.Close()
		hc.Close()
		return true
	}
	g.goAsync(func() {
		defer g.untrack(guest)
		defer g.untrack(hc)
		relayDatagrams(guest, ep, &wq, hc)
	})
	return true
}

// relayDatagrams carries datagrams both ways between the gateway's
// endpoint ep (guest, its gonet wrapper) and the connected host socket hc,
// until neither way has carried anything for udpIdleTimeout; then it
// closes both. The host's datagrams are read by a goroutine; the guest's
// are sent on as they arrive, on the goroutine that delivers them (see
// guestToHost).
func relayDatagrams(guest *gonet.UDPConn, ep tcpip.Endpoint, wq *waiter.Queue, hc *net.UDPConn) {
	up := newGuestToHost(ep, hc)
	entry := waiter.NewFunctionEntry(waiter.ReadableEvents, func(waiter.EventMask) { up.kick() })
	wq.EventRegister(&entry)
	up.kick() // what arrived before the entry was registered

	buf := make([]byte, maxDatagram)
	for {
		hc.SetReadDeadline(time.Now().Add(udpIdleTimeout))
		n, err := readHost(hc, up.rc, buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
				// Quiet this way: the flow lives on if the other way
				// has carried something meanwhile.
				if time.Since(up.lastSent()) < udpIdleTimeout {
					continue
				}
				break
			}
			if isClosed(err) {
				break
			}
			// ICMP errors (e.g. port unreachable) surface as read errors
			// on a connected socket; the flow goes on.
			continue
		}
		up.touch()
		if _, err := guest.Write(buf[:n]); err != nil && isClosed(err) {
			break
		}
	}
	wq.EventUnregister(&entry)
	guest.Close()
	hc.Close()
	up.wait()
}

// readHost reads a datagram from the host socket as hc.Read does (its
// deadline too), but through nbio, which keeps the runtime's monitor
// asleep (see there).
func readHost(hc *net.UDPConn, rc syscall.RawConn, buf []byte) (int, error) {
	if rc == nil {
		return hc.Read(buf)
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = nbio.Read(int(fd), buf)
		return rerr != unix.EAGAIN
	}); err != nil {
		return 0, err
	}
	return n, rerr
}

// guestToHost sends the guest's datagrams to the host socket. A datagram
// is sent on the goroutine that delivered it to the endpoint (the guest's
// own send, through the in-memory link), so a request goes out without a
// goroutine's wake-up; only when the host socket's buffer is full does a
// goroutine take over and wait for room, keeping the datagrams' order.
type guestToHost struct {
	ep   tcpip.Endpoint
	hc   *net.UDPConn
	rc   syscall.RawConn
	busy atomic.Bool  // someone is sending (inline or the goroutine)
	shut atomic.Bool  // the endpoint or the host socket is closed: nothing more to send
	last atomic.Int64 // when a datagram last went either way, UnixNano
	done sync.WaitGroup
	buf  []byte // the sender's; only whoever holds busy uses it
}

func newGuestToHost(ep tcpip.Endpoint, hc *net.UDPConn) *guestToHost {
	u := &guestToHost{ep: ep, hc: hc, buf: make([]byte, maxDatagram)}
	u.rc, _ = hc.SyscallConn()
	u.touch()
	return u
}

func (u *guestToHost) touch()              { u.last.Store(time.Now().UnixNano()) }
func (u *guestToHost) lastSent() time.Time { return time.Unix(0, u.last.Load()) }

// kick sends what the endpoint holds, unless a sender is at work already
// (it looks again before it stops, so nothing is left behind).
func (u *guestToHost) kick() {
	for !u.shut.Load() && u.busy.CompareAndSwap(false, true) {
		if u.send(false) {
			return // a goroutine carries on
		}
		u.busy.Store(false)
		if u.ep.Readiness(waiter.ReadableEvents) == 0 {
			return
		}
	}
}

// send reads and sends datagrams until the endpoint has none (false) or,
// inline, the host socket is full: then it hands the datagram in hand to
// a goroutine, which waits for room and goes on (true). busy is held.
func (u *guestToHost) send(waiting bool) bool {
	for {
		w := tcpip.SliceWriter(u.buf)
		res, terr := u.ep.Read(&w, tcpip.ReadOptions{})
		switch terr.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			return false
		case *tcpip.ErrClosedForReceive, *tcpip.ErrInvalidEndpointState:
			u.shut.Store(true)
			return false
		default:
			continue // an ICMP error reported by the endpoint: the flow goes on
		}
		u.touch()
		data := u.buf[:res.Count]
		if waiting || u.rc == nil {
			if _, err := u.hc.Write(data); err != nil && isClosed(err) {
				u.shut.Store(true)
				return false
			}
			continue
		}
		var werr error
		if err := u.rc.Control(func(fd uintptr) { _, werr = nbio.Write(int(fd), data) }); err != nil {
			u.shut.Store(true) // the host socket is closed: the flow is ending
			return false
		}
		if werr == unix.EAGAIN {
			u.done.Add(1)
			go func() {
				defer u.done.Done()
				u.hc.Write(data)
				u.send(true)
				u.busy.Store(false)
				u.kick()
			}()
			return true
		}
	}
}

// wait waits for a sending goroutine to end (the sockets are closed).
func (u *guestToHost) wait() { u.done.Wait() }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
