package link

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FrameSocket is a link endpoint on a message socket that carries one whole
// Ethernet frame per message, such as one end of a SOCK_SEQPACKET unix
// socket pair joining two processes. It frames nothing itself: wrap it in
// ethernet.New. Each frame is copied once each way (the kernel's copy);
// there are no offloads, so every frame is at most MTU bytes, as on a
// wire. When the other end goes away, frames written are counted in
// Dropped and received ones stop.
type FrameSocket struct {
	f    *os.File
	raw  syscall.RawConn
	mtu  uint32 // largest frame, Ethernet header included
	addr tcpip.LinkAddress

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	wg         sync.WaitGroup
	closed     atomic.Bool

	// Dropped counts frames that could not be sent: the other end was
	// gone or its queue full for good.
	Dropped atomic.Uint64
	// Malformed counts received messages too short to be a frame.
	Malformed atomic.Uint64
	// Down is set once the other end has closed its socket.
	Down atomic.Bool
}

var _ stack.LinkEndpoint = (*FrameSocket)(nil)

// NewFrameSocket takes fd (a connected message socket) over for a link
// whose largest IP packet is mtu bytes and whose frames come from and go to
// addr. On error the caller still owns fd.
func NewFrameSocket(fd int, mtu uint32, addr tcpip.LinkAddress) (*FrameSocket, error) {
	// Non-blocking before os.NewFile, so that the file is Go's poller's and
	// Close wakes a reader.
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("frame socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "frames")
	raw, _ := f.SyscallConn() // fails only for a nil *os.File
	return &FrameSocket{f: f, raw: raw, mtu: mtu + header.EthernetMinimumSize, addr: addr}, nil
}

// Attach implements stack.NetworkLinkEndpoint; it starts the reader.
func (e *FrameSocket) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	first := e.dispatcher == nil && d != nil
	e.dispatcher = d
	e.mu.Unlock()
	if first && !e.closed.Load() {
		e.wg.Add(1)
		go e.readLoop()
	}
}

// IsAttached implements stack.NetworkLinkEndpoint.
func (e *FrameSocket) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

func (e *FrameSocket) readLoop() {
	defer e.wg.Done()
	// Room for a frame a little larger than ours, so that one that is
	// too large is seen whole and dropped, not cut short and delivered.
	buf := make([]byte, e.mtu+1)
	for {
		var n int
		var rerr error
		err := e.raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		switch {
		case err != nil && (e.closed.Load() || errors.Is(err, os.ErrClosed)):
			return
		case err == unix.EINTR:
			continue
		case err != nil || n == 0:
			// The other end is gone (end of file on a message socket).
			e.Down.Store(true)
			return
		case n < header.EthernetMinimumSize || n > int(e.mtu):
			e.Malformed.Add(1)
			continue
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(buf[:n])})
		e.mu.RLock()
		d := e.dispatcher
		e.mu.RUnlock()
		if d != nil {
			d.DeliverNetworkPacket(0, pkt)
		}
		pkt.DecRef()
	}
}

// fullWait is how long a write waits for room in a full socket before the
// frame is dropped. A full socket holds the writer back, as a busy wire
// would, but not for good: a node's reader goroutines forward what they
// read by writing to another link, so nodes whose sockets were all full
// could otherwise wait on each other in a ring (h2 → r1 → h1 data one way,
// ACKs the other) and never move again.
const fullWait = 20 * time.Millisecond

// WritePackets implements stack.LinkWriter: one message per frame. A frame
// that finds the socket full for fullWait is dropped, as a full transmit
// queue drops, and counted in Dropped.
func (e *FrameSocket) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		bufs := pkt.AsSlices()
		var werr error
		send := func(fd uintptr) bool {
			_, werr = unix.SendmsgBuffers(int(fd), bufs, nil, nil, unix.MSG_NOSIGNAL)
			return werr != unix.EAGAIN
		}
		// A first try without waiting; only a full socket pays for the
		// deadline.
		err := e.raw.Write(func(fd uintptr) bool { send(fd); return true })
		if err == nil && werr == unix.EAGAIN {
			e.f.SetWriteDeadline(time.Now().Add(fullWait))
			err = e.raw.Write(send)
			e.f.SetWriteDeadline(time.Time{})
			if errors.Is(err, os.ErrDeadlineExceeded) {
				e.Dropped.Add(1)
				n++ // lost on the wire, not refused
				continue
			}
		}
		if err == nil {
			err = werr
		}
		if err != nil {
			e.Dropped.Add(1)
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		}
		n++
	}
	return n, nil
}

// Close closes the socket and waits for the reader to stop.
func (e *FrameSocket) Close() {
	if e.closed.Swap(true) {
		return
	}
	e.f.Close()
	e.wg.Wait()
}

func (e *FrameSocket) Wait()                                        {}
func (e *FrameSocket) MTU() uint32                                  { return e.mtu }
func (e *FrameSocket) SetMTU(uint32)                                {}
func (e *FrameSocket) Capabilities() stack.LinkEndpointCapabilities { return 0 }
func (e *FrameSocket) MaxHeaderLength() uint16                      { return 0 }
func (e *FrameSocket) LinkAddress() tcpip.LinkAddress               { return e.addr }
func (e *FrameSocket) SetLinkAddress(tcpip.LinkAddress)             {}
func (e *FrameSocket) ARPHardwareType() header.ARPHardwareType      { return header.ARPHardwareNone }
func (e *FrameSocket) AddHeader(*stack.PacketBuffer)                {}
func (e *FrameSocket) ParseHeader(*stack.PacketBuffer) bool         { return true }
func (e *FrameSocket) SetOnCloseAction(func())                      {}

// SocketPair returns the two ends of a SOCK_SEQPACKET unix socket pair for
// a FrameSocket link, close-on-exec, with send buffers deep enough for a
// burst of frames.
func SocketPair() ([2]int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return [2]int{-1, -1}, fmt.Errorf("socket pair: %w", err)
	}
	for _, fd := range fds {
		// A unix socket's queue is bounded by the sender's buffer; about
		// 300 frames of 1500 bytes fit in 1 MiB (each costs its skb too).
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	}
	return [2]int{fds[0], fds[1]}, nil
}
