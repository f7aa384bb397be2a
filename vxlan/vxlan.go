// Package vxlan carries Ethernet frames in VXLAN (RFC 7348) over UDP, so
// that a link of a lab can join stacks on different machines, or a stack and
// a Linux vxlan device. A VTEP is one UDP socket serving any number of
// tunnels, told apart by their VXLAN network identifier (VNI); each tunnel
// relays between the socket and a local message socket that carries one
// Ethernet frame per message (the other end of a link.FrameSocket).
package vxlan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// HeaderLen is the size of the VXLAN header in front of each frame.
const HeaderLen = 8

// Port is the UDP port IANA assigned to VXLAN, which RFC 7348 names.
const Port = 4789

// MaxVNI is the largest 24-bit VXLAN network identifier.
const MaxVNI = 1<<24 - 1

// Overhead is what VXLAN adds around a frame on an IPv4 path: outer IPv4,
// UDP and VXLAN headers and the inner Ethernet header. A link's MTU plus
// Overhead must fit the path's MTU (1450 on a 1500-byte path, Linux's
// default for a vxlan device).
const Overhead = 20 + 8 + HeaderLen + 14

// flagVNI is the I flag: the VNI field is valid (RFC 7348 §5).
const flagVNI = 0x08

// ErrHeader is a datagram that is not a VXLAN frame.
var ErrHeader = errors.New("not a VXLAN header with a valid VNI")

// Encode writes the header for vni into h[:HeaderLen].
func Encode(h []byte, vni uint32) {
	binary.BigEndian.PutUint32(h[0:], flagVNI<<24)
	binary.BigEndian.PutUint32(h[4:], vni<<8)
}

// Decode returns the VNI and the frame of a VXLAN datagram. The reserved
// fields are ignored on receipt, as the RFC asks.
func Decode(p []byte) (uint32, []byte, error) {
	if len(p) < HeaderLen || p[0]&flagVNI == 0 {
		return 0, nil, ErrHeader
	}
	return binary.BigEndian.Uint32(p[4:]) >> 8, p[HeaderLen:], nil
}

// VTEP is a VXLAN tunnel end point: one UDP socket and its tunnels.
type VTEP struct {
	conn *net.UDPConn
	logf func(string, ...any)

	mu      sync.RWMutex
	tunnels map[uint32]*Tunnel
	closed  bool
	wg      sync.WaitGroup

	// BadHeader counts datagrams that were not VXLAN; UnknownVNI those
	// for a VNI without a tunnel here.
	BadHeader, UnknownVNI atomic.Uint64
}

// Tunnel is one VNI's link to a remote VTEP.
type Tunnel struct {
	VNI    uint32
	Remote netip.AddrPort
	frames *net.UnixConn

	// Frames and bytes each way; WrongSource counts datagrams for this VNI
	// from an address other than Remote's, which are dropped.
	TxFrames, TxBytes, RxFrames, RxBytes, WrongSource, SendErrors atomic.Uint64
}

// Listen opens a VTEP on local (its address may be unspecified: any).
// logf receives the first of each kind of trouble.
func Listen(local netip.AddrPort, logf func(string, ...any)) (*VTEP, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, fmt.Errorf("VXLAN port: %w", err)
	}
	conn.SetReadBuffer(4 << 20)
	conn.SetWriteBuffer(4 << 20)
	v := &VTEP{conn: conn, logf: logf, tunnels: map[uint32]*Tunnel{}}
	v.wg.Add(1)
	go v.receive()
	return v, nil
}

// Addr is the VTEP's UDP address.
func (v *VTEP) Addr() netip.AddrPort { return v.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Add starts a tunnel for vni to remote, relaying the frames of frames (a
// SOCK_SEQPACKET unix socket), which it takes over.
func (v *VTEP) Add(vni uint32, remote netip.AddrPort, frames *net.UnixConn) (*Tunnel, error) {
	if vni == 0 || vni > MaxVNI {
		return nil, fmt.Errorf("VNI %d is out of range (1 to %d)", vni, MaxVNI)
	}
	t := &Tunnel{VNI: vni, Remote: netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), frames: frames}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, net.ErrClosed
	}
	if _, ok := v.tunnels[vni]; ok {
		return nil, fmt.Errorf("VNI %d has a tunnel on %s already (give each link its own VNI)", vni, v.Addr())
	}
	v.tunnels[vni] = t
	v.wg.Add(1)
	go v.send(t)
	return t, nil
}

// send carries t's frames to the remote VTEP.
func (v *VTEP) send(t *Tunnel) {
	defer v.wg.Done()
	buf := make([]byte, HeaderLen+1<<16)
	Encode(buf, t.VNI)
	dst := net.UDPAddrFromAddrPort(t.Remote)
	logged := false
	for {
		n, err := t.frames.Read(buf[HeaderLen:])
		if err != nil || n == 0 {
			return // the node is gone, or the VTEP closed
		}
		if _, err := v.conn.WriteToUDP(buf[:HeaderLen+n], dst); err != nil {
			t.SendErrors.Add(1)
			if !logged {
				v.logf("vxlan vni %d to %s: %v (frames are dropped while it lasts)", t.VNI, t.Remote, err)
				logged = true
			}
			continue
		}
		t.TxFrames.Add(1)
		t.TxBytes.Add(uint64(n))
	}
}

// receive hands each datagram's frame to its tunnel.
func (v *VTEP) receive() {
	defer v.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		n, from, err := v.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		vni, frame, err := Decode(buf[:n])
		if err != nil || len(frame) < 14 {
			v.BadHeader.Add(1)
			continue
		}
		v.mu.RLock()
		t := v.tunnels[vni]
		v.mu.RUnlock()
		if t == nil {
			v.UnknownVNI.Add(1)
			continue
		}
		// The remote may send from any port (Linux picks one per flow),
		// but only from its address.
		if from.Addr().Unmap() != t.Remote.Addr() {
			t.WrongSource.Add(1)
			continue
		}
		if _, err := t.frames.Write(frame); err != nil {
			continue // the node is gone; the frame is lost as on a cut wire
		}
		t.RxFrames.Add(1)
		t.RxBytes.Add(uint64(len(frame)))
	}
}

// Close closes the socket and every tunnel's frame socket, and waits for
// the relays to stop.
func (v *VTEP) Close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	for _, t := range v.tunnels {
		t.frames.Close()
	}
	v.mu.Unlock()
	v.conn.Close()
	v.wg.Wait()
}
