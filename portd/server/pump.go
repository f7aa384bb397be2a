package server

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// maxFrame is the largest message on the frame socket: a 64 KiB GSO
// super-frame with its Ethernet header and, as on a packet socket with
// PACKET_VNET_HDR, a virtio-net header in front.
const maxFrame = header.VirtioNetHeaderSize + header.EthernetMinimumSize + 65535

// batchSize is how many frames one recvmmsg/sendmmsg moves.
const batchSize = 32

// errNotOurs is a check's answer for a frame that is not for this way
// (the interface's frames for other hosts): dropped, neither passed nor
// refused.
var errNotOurs = errors.New("not the client's frame")

// A pump carries frames one way between two sockets of a session: from
// the interface to the client, or from the client to the interface. Each
// system call moves a batch (recvmmsg, sendmmsg), and each frame of the
// batch meets the way's check before it goes on.
type pump struct {
	src, dst *os.File
	// linkAddrs says src is a packet socket: each frame comes with its
	// link-layer address, whose packet type the check is given.
	linkAddrs bool
	// check decides each frame: nil passes it, errNotOurs drops it, and
	// any other error refuses it (drops and counts it). truncated says the
	// frame did not fit in maxFrame.
	check func(frame []byte, truncated bool, pktType uint8) error
	// refuse counts a frame that check or the kernel (sending it on dst)
	// refused; the rest of the batch still goes. Nil on a way where no
	// frame is refused: there an error of the kernel ends the pump.
	refuse func(error)
	passed *atomic.Uint64 // frames handed to dst
	// reading and writing name the two ends for the log of why the pump
	// ended the session.
	reading, writing string
}

// pump runs p until either socket is closed or fails, then ends the
// session.
func (s *session) pump(p *pump) {
	defer s.srv.endSession(s)
	in, err := p.src.SyscallConn()
	if err != nil {
		return
	}
	out, err := p.dst.SyscallConn()
	if err != nil {
		return
	}
	b := newBatch(batchSize, maxFrame, p.linkAddrs)
	list := newSendList(batchSize)
	skip := func(error) bool { return false }
	if p.refuse != nil {
		skip = func(err error) bool {
			p.refuse(fmt.Errorf("the kernel refused the frame: %w", err))
			return true
		}
	}
	for {
		n, rerr, err := b.recvFrom(in)
		if err != nil {
			return
		}
		if rerr != nil {
			// The packet socket reports frames it lost or the interface
			// going down for a moment: the session goes on, as a wire
			// would.
			if rerr == unix.EINTR || rerr == unix.ENOBUFS || rerr == unix.ENETDOWN {
				continue
			}
			s.logEnd(p.reading, rerr)
			return
		}
		list.reset()
		for i := range n {
			m := &b.hdrs[i]
			if m.Len == 0 {
				return // the client closed its end
			}
			var pktType uint8
			if p.linkAddrs {
				pktType = b.names[i].Pkttype
			}
			frame := b.bufs[i][:m.Len]
			switch err := p.check(frame, m.Hdr.Flags&unix.MSG_TRUNC != 0, pktType); {
			case err == nil:
				list.add(frame)
			case err == errNotOurs:
			case p.refuse != nil:
				p.refuse(err)
			}
		}
		sent, err := writeAll(out, list, skip)
		p.passed.Add(uint64(sent))
		if err != nil {
			s.logEnd(p.writing, err)
			return
		}
	}
}

// writeAll sends every message of list on c, waiting while the socket is
// full, and returns how many the kernel took (a frame lost because the
// interface is busy or down counts as taken: it is lost as on a wire). A
// message the kernel refuses is skipped if skip says so; otherwise the
// error ends the loop.
func writeAll(c syscall.RawConn, list *sendList, skip func(error) bool) (int, error) {
	sent := 0
	for off := 0; off < len(list.hdrs); {
		var n int
		var serr error
		if err := c.Write(func(fd uintptr) bool {
			n, serr = sendmmsg(int(fd), list.hdrs[off:])
			return serr != unix.EAGAIN
		}); err != nil {
			return sent, err
		}
		switch {
		case serr == nil:
			off += n
			sent += n
		case serr == unix.EINTR:
		case serr == unix.ENOBUFS || serr == unix.ENETDOWN || serr == unix.ENXIO:
			off++
			sent++
		case skip(serr):
			off++
		default:
			return sent, serr
		}
	}
	return sent, nil
}
