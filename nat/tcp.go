package nat

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ustack/ustack/internal/growstack"
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
	growstack.Grow() // netstack starts a goroutine per SYN
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
	hc, err := dialHost(ctx, target)
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
	g.relay(ep, &wq, hc)
}
