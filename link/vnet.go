package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/internal/inline"
)

// Every frame on a tap opened with IFF_VNET_HDR, or on a packet socket with
// PACKET_VNET_HDR, has a virtio-net header in front (struct virtio_net_hdr,
// linux/virtio_net.h: netstack's header.VirtioNetHeader, with the flag and
// GSO values of x/sys/unix). It carries the offload state that lets one
// read or write move a 64 KiB TCP super-frame instead of ~44 MTU-sized ones.
const (
	// TUNSETOFFLOAD flags (linux/if_tun.h).
	tunFCsum = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04

	// vnetGSOMaxSize is the largest super-frame netstack builds for us.
	vnetGSOMaxSize = 1 << 16
)

// vnetEndpoint is a link endpoint on a tap (or packet socket) with the
// kernel's offloads on: TCP segmentation (TSO) and checksum offload in both
// directions. It carries whole Ethernet frames; wrap it in ethernet.New for
// the framing. Its reader delivers each frame to the stack itself, so a
// frame costs no hand-off between goroutines before netstack's own.
type vnetEndpoint struct {
	f        *os.File
	raw      syscall.RawConn
	mtu      uint32
	addr     tcpip.LinkAddress
	busyPoll time.Duration // see readFrame
	stats    atomic.Pointer[tcpip.Stats]

	// unvouched is set while the reader delivers a frame whose TCP or
	// UDP checksum it could not check (stackVerifies): Capabilities then
	// drops RX checksum offload, and netstack checks that frame itself.
	// netstack reads the capability once per delivered frame, on the
	// delivering goroutine, which is the reader.
	unvouched atomic.Bool

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	wg         sync.WaitGroup
	closed     atomic.Bool
}

var (
	_ stack.LinkEndpoint = (*vnetEndpoint)(nil)
	_ stack.GSOEndpoint  = (*vnetEndpoint)(nil)
)

// enableOffloads asks the tap to pass TSO super-frames and partial
// checksums; it needs a tap opened with IFF_VNET_HDR.
func enableOffloads(fd int) error {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, header.VirtioNetHeaderSize); err != nil {
		return fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4|tunFTSO6); err != nil {
		return fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	return nil
}

// newVnetEndpoint takes over fd (a tap or packet socket, called name) for
// an endpoint whose frames come from and go to addr. On error the caller
// still owns fd.
func newVnetEndpoint(fd int, name string, mtu uint32, addr tcpip.LinkAddress, busyPoll time.Duration) (*vnetEndpoint, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	raw, _ := f.SyscallConn() // fails only for a nil *os.File
	return &vnetEndpoint{f: f, raw: raw, mtu: mtu + header.EthernetMinimumSize, addr: addr, busyPoll: busyPoll}, nil
}

// Attach implements stack.NetworkLinkEndpoint; it starts the reader.
func (e *vnetEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	first := e.dispatcher == nil && d != nil
	e.dispatcher = d
	e.mu.Unlock()
	if first {
		e.wg.Add(1)
		go e.readLoop()
	}
}

func (e *vnetEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

func (e *vnetEndpoint) readLoop() {
	defer e.wg.Done()
	buf := make([]byte, header.VirtioNetHeaderSize+header.EthernetMinimumSize+vnetGSOMaxSize)
	for {
		n, err := e.readFrame(buf)
		if err != nil {
			// A socket's peer that closes its end (io.EOF) has cut the
			// link for good; a tap or packet socket never does.
			if e.closed.Load() || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			continue
		}
		if n < header.VirtioNetHeaderSize+header.EthernetMinimumSize {
			countBad(e.stats.Load(), malformedFrame)
			continue
		}
		// One copy, into a pooled chunk that the packet then owns.
		v := buffer.NewViewWithData(buf[header.VirtioNetHeaderSize:n])
		// The stack trusts this NIC's checksums (Capabilities), so each
		// frame either has the kernel's word for them or is checked here:
		// a partial checksum (a local sender) is completed, so that a
		// capture or a forwarded packet shows the right one.
		unvouched := false
		switch flags := buf[0]; {
		case flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0:
			if !completeChecksum(buf[:header.VirtioNetHeaderSize], v.AsSlice()) {
				v.Release()
				countBad(e.stats.Load(), malformedFrame)
				continue
			}
		case flags&unix.VIRTIO_NET_HDR_F_DATA_VALID != 0:
		default:
			switch bad := verifyFrame(v.AsSlice()); bad {
			case checksumOK:
			case stackVerifies:
				unvouched = true
			default:
				v.Release()
				countBad(e.stats.Load(), bad)
				continue
			}
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
		e.mu.RLock()
		d := e.dispatcher
		e.mu.RUnlock()
		if d != nil {
			// A small frame (a request, an answer, an ACK) is run to
			// completion: its segment is processed here and the relay that
			// passes its data to the program runs here too (package
			// inline); a bulk transfer's frames go to netstack's
			// processors, which work beside this loop.
			scope := n <= inline.MaxChunk
			if scope {
				inline.Begin()
			}
			e.unvouched.Store(unvouched)
			d.DeliverNetworkPacket(0, pkt)
			e.unvouched.Store(false)
			if scope {
				inline.End()
			}
		}
		pkt.DecRef()
	}
}

// CountDropsIn makes ep, if it is a tap's or packet socket's endpoint,
// count the frames it drops (too short, a partial checksum it cannot
// complete, a bad checksum) in the stack's own counters
// (IP.MalformedPacketsReceived, TCP.ChecksumErrors, UDP.ChecksumErrors),
// where netstack would have counted them.
func CountDropsIn(ep stack.LinkEndpoint, stats tcpip.Stats) {
	if v, ok := ep.(*vnetEndpoint); ok {
		v.stats.Store(&stats)
	}
}

// readFrame reads the next frame into buf. Without busy polling the
// goroutine sleeps in Go's poller until the fd is readable. With it, a read
// that finds nothing is retried, yielding the processor between tries so
// netstack's goroutines run, for up to busyPoll after the last frame
// before the reader sleeps: the reply in a request-response exchange then
// meets a reader that is awake, and the wake-up of a sleeping thread (and
// vCPU) is saved.
func (e *vnetEndpoint) readFrame(buf []byte) (int, error) {
	if e.busyPoll <= 0 {
		return e.f.Read(buf)
	}
	var n int
	var rerr error
	deadline := time.Now().Add(e.busyPoll)
	err := e.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			if rerr != unix.EAGAIN {
				return true
			}
			if e.closed.Load() || time.Now().After(deadline) {
				return false // sleep until readable
			}
			runtime.Gosched()
		}
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// completeChecksum finishes a partial checksum the kernel left for the
// "hardware": the field at csum_start+csum_offset holds the pseudo-header
// sum, and the sum over everything from csum_start completes it. netstack
// honours checksum offload only per NIC, not per frame, so finishing it here
// keeps the stack verifying every other frame (bad ones are counted and
// dropped there).
func completeChecksum(vh, frame []byte) bool {
	// csum_start and csum_offset, in the little-endian order that
	// header.VirtioNetHeader.Encode writes (its getters read big-endian).
	start := int(binary.LittleEndian.Uint16(vh[6:]))
	field := start + int(binary.LittleEndian.Uint16(vh[8:]))
	if field+2 > len(frame) {
		return false
	}
	binary.BigEndian.PutUint16(frame[field:], ^checksum.Checksum(frame[start:], 0))
	return true
}

// WritePackets implements stack.LinkWriter: one writev per frame, the vnet
// header telling the kernel to segment and checksum what netstack left to it.
func (e *vnetEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	var hb [header.VirtioNetHeaderSize]byte
	n := 0
	for _, pkt := range pkts.AsSlice() {
		var h header.VirtioNetHeaderFields
		if g := pkt.GSOOptions; g.Type == stack.GSOTCPv4 || g.Type == stack.GSOTCPv6 {
			h.HdrLen = uint16(pkt.HeaderSize())
			if g.NeedsCsum {
				h.Flags = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
				h.CSumStart = header.EthernetMinimumSize + g.L3HdrLen
				h.CSumOffset = g.CsumOffset
			}
			if uint16(pkt.Data().Size()) > g.MSS {
				h.GSOType = unix.VIRTIO_NET_HDR_GSO_TCPV4
				if g.Type == stack.GSOTCPv6 {
					h.GSOType = unix.VIRTIO_NET_HDR_GSO_TCPV6
				}
				h.GSOSize = g.MSS
			}
		}
		header.VirtioNetHeader(hb[:]).Encode(&h)
		iov := append([][]byte{hb[:]}, pkt.AsSlices()...)
		var werr error
		err := e.raw.Write(func(fd uintptr) bool {
			_, werr = unix.Writev(int(fd), iov)
			return werr != unix.EAGAIN
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		}
		n++
	}
	return n, nil
}

func (e *vnetEndpoint) Close() {
	if e.closed.Swap(true) {
		return
	}
	e.f.Close()
	e.wg.Wait()
}

func (e *vnetEndpoint) Wait()         {}
func (e *vnetEndpoint) MTU() uint32   { return e.mtu }
func (e *vnetEndpoint) SetMTU(uint32) {}
func (e *vnetEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	if e.unvouched.Load() {
		return 0
	}
	return stack.CapabilityRXChecksumOffload // see readLoop
}
func (e *vnetEndpoint) MaxHeaderLength() uint16                 { return 0 }
func (e *vnetEndpoint) LinkAddress() tcpip.LinkAddress          { return e.addr }
func (e *vnetEndpoint) SetLinkAddress(tcpip.LinkAddress)        {}
func (e *vnetEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }
func (e *vnetEndpoint) AddHeader(*stack.PacketBuffer)           {}
func (e *vnetEndpoint) ParseHeader(*stack.PacketBuffer) bool    { return true }
func (e *vnetEndpoint) SetOnCloseAction(func())                 {}
func (e *vnetEndpoint) GSOMaxSize() uint32                      { return vnetGSOMaxSize }
func (e *vnetEndpoint) SupportedGSO() stack.SupportedGSO        { return stack.HostGSOSupported }
