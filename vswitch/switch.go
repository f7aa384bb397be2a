// Package vswitch is a learning Ethernet switch in user space: stacks in
// other processes attach to its ports over a unix socket, without
// privileges, and reach each other as machines on one Ethernet segment.
//
// The switch serves a SOCK_SEQPACKET socket DIR/switch/NAME.sock, in the
// per-user directory of the stacks' control sockets (control.Dir) and under
// the same rules: the directory is owner-only, only the same user (or root)
// may connect (SO_PEERCRED), and the name is held by a lock the kernel
// drops when the switch dies, so that a switch killed with SIGKILL leaves a
// socket the next one of the name replaces.
//
// # Protocol
//
// A client's first message is a JSON hello: {"ustack_switch":1,"op":
// "attach","label":"web","mtu":1500} asks for a port, {"ustack_switch":1,
// "op":"status"} for the switch's Status. The switch answers an attach with
// {"port":N,"mtu":M} (or {"error":"..."}) and from then on each message either
// way is one Ethernet frame with a virtio-net header in front (struct
// virtio_net_hdr, 10 bytes), the format of a packet socket with
// PACKET_VNET_HDR and of ustack portd's frame socket: TCP super-frames of up
// to 64 KiB cross the switch whole, as they cross a Linux bridge between
// virtio NICs, and other frames are at most the switch's MTU plus the
// Ethernet header. A status request is answered with one message and the
// connection is closed.
//
// # Forwarding
//
// The switch learns each unicast source MAC's port and forwards a frame to
// a known unicast destination's port only; broadcast, multicast and
// unknown destinations are flooded to every other port. A learned address
// ages out after Config.Aging without frames from it, and at once when its
// port goes. A port goes when its socket closes: the process exited or was
// killed.
//
// Each port has an egress queue, as a switch's output port or a Linux
// interface's transmit queue does: a frame for a port whose socket is
// full waits there, in order, and is written when the peer reads; once
// the queue holds Config.QueueLen frames (or queueBytes), further frames
// for the port are dropped and counted. The forwarding itself never waits
// for a port, so a peer that stopped reading cannot wedge the switch, and
// whether a frame is dropped depends on how many wait, not on how soon
// the peer's process is scheduled.
package vswitch

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack/control"
)

// Kind is the switches' directory under control.Dir.
const Kind = "switch"

const (
	// DefaultMTU is the largest IP packet of a frame that is not a TCP
	// super-frame, unless Config.MTU says otherwise: Ethernet's.
	DefaultMTU = 1500
	// MinMTU and MaxMTU bound Config.MTU: IPv6 needs 1280.
	MinMTU = 1280
	MaxMTU = 65535
	// DefaultAging is how long a learned address stays without frames
	// from it (IEEE 802.1D's default).
	DefaultAging = 300 * time.Second

	vnetHdrLen = header.VirtioNetHeaderSize
	ethHdrLen  = header.EthernetMinimumSize
	// maxMessage is the largest frame message: a 64 KiB TCP super-frame.
	maxMessage = vnetHdrLen + ethHdrLen + 1<<16

	// SocketBuffer is the send buffer each way of a port's socket, as far
	// as net.core.wmem_max lets an unprivileged process have it: room for
	// a few super-frames, so that a burst does not stall the sender.
	SocketBuffer = 1 << 20

	// DefaultQueueLen is a port's egress queue in frames: Linux's
	// default transmit queue length.
	DefaultQueueLen = 1000
	// queueBytes also bounds a port's queue, so that 1000 TCP
	// super-frames of 64 KiB do not hold 64 MiB.
	queueBytes = 8 << 20
	// helloTimeout bounds the wait for a new connection's hello.
	helloTimeout = 5 * time.Second
	// maxStatusMACs is how many learned addresses Status lists per port.
	maxStatusMACs = 64
)

// Config is a switch's settings; the zero value is the defaults.
type Config struct {
	// MTU is the largest IP packet in a frame that is not a TCP
	// super-frame; 0 means DefaultMTU. Stacks attach with this MTU unless
	// they ask for a smaller one; larger frames are dropped and counted.
	MTU int
	// Aging is how long a learned address is kept without frames from it;
	// 0 means DefaultAging.
	Aging time.Duration
	// QueueLen is each port's egress queue in frames; 0 means
	// DefaultQueueLen.
	QueueLen int
	// Logf receives a line when a port comes or goes, or a connection is
	// refused (nil: discard).
	Logf func(format string, args ...any)
}

// Switch is a running switch.
type Switch struct {
	name  string
	cfg   Config
	claim *control.Claim
	ln    *net.UnixListener
	logf  func(string, ...any)

	mu       sync.Mutex
	ports    map[int]*port
	conns    map[*net.UnixConn]struct{} // admitted, not yet ports
	nextPort int
	closed   bool
	// flood is the ports as a list, replaced whole when one comes or goes,
	// so that a flood reads it without a lock.
	flood atomic.Pointer[[]*port]

	fdbMu sync.RWMutex
	fdb   map[mac]*fdbEntry

	flooded atomic.Uint64
	wg      sync.WaitGroup
	stop    chan struct{}
}

type mac [6]byte

func (m mac) String() string { return net.HardwareAddr(m[:]).String() }

type fdbEntry struct {
	port *port
	seen atomic.Int64 // unix nanoseconds of the last frame from the address
}

// port is an attached client.
type port struct {
	num     int
	label   string
	pid     int
	command string
	conn    *net.UnixConn
	raw     syscall.RawConn
	gone    atomic.Bool

	inFrames, inBytes, inDropped    atomic.Uint64
	outFrames, outBytes, outDropped atomic.Uint64

	// The egress queue: frames (copies) waiting for
	// room in the socket, oldest first, and their bytes. The head stays
	// queued until it is written, so that a frame sent while the writer
	// writes it is queued behind it rather than written first.
	qmu      sync.Mutex
	queue    [][]byte
	qbytes   int
	qlimit   int
	wake     chan struct{} // the writer has frames to write (capacity 1)
	done     chan struct{} // the port's reader has stopped
	finished chan struct{} // the writer has stopped
}

// Listen takes the name and listens on its socket. The caller calls Serve,
// then Close.
func Listen(name string, cfg Config) (*Switch, error) {
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < MinMTU || cfg.MTU > MaxMTU {
		return nil, fmt.Errorf("MTU %d is out of range (use %d to %d)", cfg.MTU, MinMTU, MaxMTU)
	}
	if cfg.Aging == 0 {
		cfg.Aging = DefaultAging
	}
	if cfg.Aging < 0 {
		return nil, fmt.Errorf("aging %v is negative (use e.g. 300s)", cfg.Aging)
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.QueueLen < 0 {
		return nil, fmt.Errorf("queue length %d is negative (use e.g. %d frames)", cfg.QueueLen, DefaultQueueLen)
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	claim, err := control.ClaimSocket(Kind, name)
	var taken *control.NameTakenError
	if errors.As(err, &taken) {
		who := ""
		if taken.PID > 0 {
			who = fmt.Sprintf(" (pid %d)", taken.PID)
		}
		return nil, fmt.Errorf("a switch named %s is already running%s on %s (stop it first, or choose another name)", name, who, taken.Socket)
	}
	if err != nil {
		return nil, err
	}
	// The directory is owner-only, so the moment before the chmod below
	// exposes nothing.
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: claim.Path, Net: "unixpacket"})
	if err != nil {
		claim.Release()
		return nil, fmt.Errorf("switch socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // removed by Release, once
	if err := os.Chmod(claim.Path, 0o600); err != nil {
		ln.Close()
		claim.Release()
		return nil, fmt.Errorf("switch socket: %w", err)
	}
	s := &Switch{name: name, cfg: cfg, claim: claim, ln: ln, logf: logf,
		ports: map[int]*port{}, conns: map[*net.UnixConn]struct{}{}, nextPort: 1,
		fdb: map[mac]*fdbEntry{}, stop: make(chan struct{})}
	s.flood.Store(&[]*port{})
	return s, nil
}

// Name is the switch's name.
func (s *Switch) Name() string { return s.name }

// Path is the switch's socket.
func (s *Switch) Path() string { return s.claim.Path }

// MTU is the largest IP packet of a frame that is not a super-frame.
func (s *Switch) MTU() int { return s.cfg.MTU }

// Serve accepts clients until Close; it returns nil then.
func (s *Switch) Serve() error {
	s.wg.Add(1)
	go s.age()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("switch socket: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.admit(c)
	}
}

// Close stops the switch: every port's socket is closed (their stacks'
// links are cut), and the socket and the name are given up.
func (s *Switch) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.claim.Release()
}

// admit reads a new connection's hello and serves what it asks for.
func (s *Switch) admit(c *net.UnixConn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	cred, err := peerCred(c)
	switch {
	case err != nil:
		s.logf("refused a connection: reading its credentials: %v", err)
		return
	case int(cred.Uid) != os.Getuid() && cred.Uid != 0:
		s.logf("refused a connection from uid %d pid %d (only uid %d and root may attach)", cred.Uid, cred.Pid, os.Getuid())
		return
	}
	var h hello
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	n, err := c.Read(buf)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		s.mu.Lock()
		closing := s.closed
		s.mu.Unlock()
		if !closing {
			s.logf("refused a connection from pid %d: no hello: %v", cred.Pid, err)
		}
		return
	}
	if err := json.Unmarshal(buf[:n], &h); err != nil || h.Version != protocolVersion {
		s.reply(c, welcome{Error: fmt.Sprintf("not a ustack switch hello of version %d", protocolVersion)})
		return
	}
	setSendBuffer(c)
	switch h.Op {
	case "status":
		st := s.Status()
		b, _ := json.Marshal(st)
		c.Write(b)
	case "attach":
		if h.MTU > s.cfg.MTU {
			s.reply(c, welcome{MTU: s.cfg.MTU, Error: (&MTUError{Switch: s.name, MTU: h.MTU, Max: s.cfg.MTU}).Error()})
			return
		}
		if h.MTU != 0 && h.MTU < MinMTU {
			s.reply(c, welcome{Error: fmt.Sprintf("MTU %d is too small (at least %d)", h.MTU, MinMTU)})
			return
		}
		s.serve(c, h.Label, int(cred.Pid))
	default:
		s.reply(c, welcome{Error: fmt.Sprintf("unknown op %q (attach or status)", h.Op)})
	}
}

func (s *Switch) reply(c *net.UnixConn, w welcome) error {
	b, _ := json.Marshal(w)
	_, err := c.Write(b)
	return err
}

// serve makes c a port and forwards its frames until it closes.
func (s *Switch) serve(c *net.UnixConn, label string, pid int) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	p := &port{label: label, pid: pid, command: commandOf(pid), conn: c, raw: raw, qlimit: s.cfg.QueueLen,
		wake: make(chan struct{}, 1), done: make(chan struct{}), finished: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	p.num = s.nextPort
	s.nextPort++
	// The port is taken in before the client learns its number, so that
	// a frame sent once it knows it (a broadcast another port sends on
	// its word) reaches it. The welcome must still come first on the
	// connection: frames for the port wait on qmu until it is written.
	p.qmu.Lock()
	s.ports[p.num] = p
	s.publishLocked()
	s.mu.Unlock()
	err = s.reply(c, welcome{Port: p.num, MTU: s.cfg.MTU})
	p.qmu.Unlock()
	if err != nil {
		s.remove(p)
		return
	}
	s.logf("port %d: %s attached", p.num, p.describe())
	go p.writeQueued()
	defer func() {
		close(p.done)
		c.Close() // a writer waiting for room gives up
		<-p.finished
	}()

	buf := make([]byte, maxMessage+1)
	limit := vnetHdrLen + ethHdrLen + s.cfg.MTU
	for {
		n, err := c.Read(buf)
		if err != nil || n == 0 {
			break // the peer closed, or the switch is closing
		}
		frame := buf[:n]
		// A message longer than the buffer arrives cut to its size:
		// one that fills it is too long.
		if n < vnetHdrLen+ethHdrLen || n > maxMessage ||
			n > limit && header.VirtioNetHeader(frame).GSOType() == unix.VIRTIO_NET_HDR_GSO_NONE {
			p.inDropped.Add(1)
			continue
		}
		p.inFrames.Add(1)
		p.inBytes.Add(uint64(n - vnetHdrLen))
		s.forward(p, frame)
	}
	s.remove(p)
}

// forward sends a frame that arrived on in to where its destination is.
func (s *Switch) forward(in *port, frame []byte) {
	eth := frame[vnetHdrLen:]
	var dst, src mac
	copy(dst[:], eth[0:6])
	copy(src[:], eth[6:12])
	now := time.Now().UnixNano()
	if src[0]&1 == 0 && src != (mac{}) {
		s.learn(src, in, now)
	}
	if dst[0]&1 == 0 {
		if out := s.lookup(dst, now); out != nil {
			if out != in { // else the destination is on the port it came from
				out.send(frame)
			}
			return
		}
	}
	s.flooded.Add(1)
	for _, p := range *s.flood.Load() {
		if p != in {
			p.send(frame)
		}
	}
}

// learn records that src is on port p.
func (s *Switch) learn(src mac, p *port, now int64) {
	s.fdbMu.RLock()
	e := s.fdb[src]
	s.fdbMu.RUnlock()
	if e != nil && e.port == p {
		// A store per frame would bounce the entry between the CPUs
		// forwarding to and from it; a second is precise enough.
		if now-e.seen.Load() > int64(time.Second) {
			e.seen.Store(now)
		}
		return
	}
	s.fdbMu.Lock()
	defer s.fdbMu.Unlock()
	if p.gone.Load() {
		return
	}
	e = &fdbEntry{port: p}
	e.seen.Store(now)
	s.fdb[src] = e
}

// lookup returns the port where dst was last seen, unless it aged out.
func (s *Switch) lookup(dst mac, now int64) *port {
	s.fdbMu.RLock()
	e := s.fdb[dst]
	s.fdbMu.RUnlock()
	if e == nil || now-e.seen.Load() > int64(s.cfg.Aging) {
		return nil
	}
	return e.port
}

// age removes the addresses not seen for Aging, now and then.
func (s *Switch) age() {
	defer s.wg.Done()
	t := time.NewTicker(min(s.cfg.Aging/2, 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		s.fdbMu.Lock()
		for m, e := range s.fdb {
			if now-e.seen.Load() > int64(s.cfg.Aging) {
				delete(s.fdb, m)
			}
		}
		s.fdbMu.Unlock()
	}
}

// remove frees a port whose socket closed, with its addresses.
func (s *Switch) remove(p *port) {
	s.mu.Lock()
	delete(s.ports, p.num)
	s.publishLocked()
	s.mu.Unlock()
	s.fdbMu.Lock()
	p.gone.Store(true)
	for m, e := range s.fdb {
		if e.port == p {
			delete(s.fdb, m)
		}
	}
	s.fdbMu.Unlock()
	s.logf("port %d: %s left (in %d frames, out %d frames, dropped %d in, %d out)", p.num, p.describe(),
		p.inFrames.Load(), p.outFrames.Load(), p.inDropped.Load(), p.outDropped.Load())
}

func (s *Switch) publishLocked() {
	list := make([]*port, 0, len(s.ports))
	for _, p := range s.ports {
		list = append(list, p)
	}
	slices.SortFunc(list, func(a, b *port) int { return a.num - b.num })
	s.flood.Store(&list)
}

// send writes a frame to the port's peer: at once if nothing is queued and
// the socket has room, else through the queue, or it drops the frame if
// the queue is full.
func (p *port) send(frame []byte) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	if len(p.queue) == 0 {
		var werr error
		err := p.raw.Write(func(fd uintptr) bool {
			_, werr = unix.Write(int(fd), frame)
			return true // never wait here: a full socket queues the frame
		})
		if err == nil && werr == nil {
			p.sent(frame)
			return
		}
		if err != nil || werr != unix.EAGAIN {
			p.outDropped.Add(1) // the peer is gone
			return
		}
	}
	if len(p.queue) >= p.qlimit || p.qbytes+len(frame) > queueBytes {
		p.outDropped.Add(1)
		return
	}
	p.queue = append(p.queue, slices.Clone(frame))
	p.qbytes += len(frame)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *port) sent(frame []byte) {
	p.outFrames.Add(1)
	p.outBytes.Add(uint64(len(frame) - vnetHdrLen))
}

// writeQueued writes the queued frames as the peer makes room, until the
// port's reader stops; frames still queued then are dropped and counted.
func (p *port) writeQueued() {
	defer close(p.finished)
	for {
		p.qmu.Lock()
		var head []byte
		if len(p.queue) > 0 {
			head = p.queue[0]
		}
		p.qmu.Unlock()
		if head == nil {
			select {
			case <-p.wake:
				continue
			case <-p.done:
				return
			}
		}
		var werr error
		err := p.raw.Write(func(fd uintptr) bool {
			_, werr = unix.Write(int(fd), head)
			return werr != unix.EAGAIN // wait in Go's poller for room
		})
		p.qmu.Lock()
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.qbytes -= len(head)
		if err == nil && werr == nil {
			p.sent(head)
		} else {
			p.outDropped.Add(uint64(1 + len(p.queue))) // the peer is gone
			p.queue, p.qbytes = nil, 0
		}
		p.qmu.Unlock()
		if err != nil || werr != nil {
			// Frames sent from now on find the socket closed and are
			// counted as dropped by send.
			<-p.done
			return
		}
	}
}

func (p *port) describe() string {
	who := fmt.Sprintf("pid %d", p.pid)
	if p.command != "" {
		who = fmt.Sprintf("%s, pid %d", p.command, p.pid)
	}
	if p.label != "" {
		return p.label + " (" + who + ")"
	}
	return who
}

// Status is the switch's state: its ports, their counters and the
// addresses learned on them.
func (s *Switch) Status() Status {
	st := Status{Name: s.name, PID: os.Getpid(), Socket: s.claim.Path, MTU: s.cfg.MTU,
		AgingSeconds: s.cfg.Aging.Seconds(), Flooded: s.flooded.Load(), Ports: []PortStatus{}}
	macs := map[*port][]string{}
	now := time.Now().UnixNano()
	s.fdbMu.RLock()
	for m, e := range s.fdb {
		if now-e.seen.Load() <= int64(s.cfg.Aging) {
			macs[e.port] = append(macs[e.port], m.String())
		}
	}
	s.fdbMu.RUnlock()
	for _, p := range *s.flood.Load() {
		list := macs[p]
		slices.Sort(list)
		ps := PortStatus{Port: p.num, Label: p.label, PID: p.pid, Command: p.command, MACs: list,
			InFrames: p.inFrames.Load(), InBytes: p.inBytes.Load(), InDropped: p.inDropped.Load(),
			OutFrames: p.outFrames.Load(), OutBytes: p.outBytes.Load(), OutDropped: p.outDropped.Load()}
		p.qmu.Lock()
		ps.Queued = len(p.queue)
		p.qmu.Unlock()
		if len(list) > maxStatusMACs {
			ps.MACs, ps.MoreMACs = list[:maxStatusMACs], len(list)-maxStatusMACs
		}
		if ps.MACs == nil {
			ps.MACs = []string{}
		}
		st.Ports = append(st.Ports, ps)
		st.Learned += len(list)
	}
	return st
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}

// setSendBuffer raises a socket's send buffer towards SocketBuffer; the
// kernel caps it at net.core.wmem_max, which is as good as it gets.
func setSendBuffer(c *net.UnixConn) {
	c.SetWriteBuffer(SocketBuffer)
}

// commandOf is the process's name (/proc/PID/comm), or "" if unknown.
func commandOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
