package lab

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack/link"
)

// pcapRelay is the lab process's end of a pcap link: it writes the
// capture's frames to the node's interface socket, paced as the link's
// speed says, and records what the interface sends. A node's end is a
// frame socket like any other, as on a VXLAN link.
type pcapRelay struct {
	lk   *Link
	src  *link.ReplaySource
	out  *link.PcapWriter // nil: nothing recorded
	conn *net.UnixConn
	logf func(string, ...any)

	sent  atomic.Uint64
	mu    sync.Mutex
	state string // PcapStatus.State

	startOnce sync.Once
	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// newPcapRelay opens lk's capture and out file and starts recording what
// fd, which it takes over (also on error), receives from the node. The
// replay itself waits for start.
func newPcapRelay(lab string, lk *Link, fd int, logf func(string, ...any)) (_ *pcapRelay, err error) {
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	p := lk.Pcap
	mac := MAC(lab, lk.Ends[0].Node, lk.Ends[0].Iface)
	src, err := link.OpenReplaySource(p.Path, tcpip.LinkAddress(mac[:]), link.ReplayOptions{Speed: p.Speed, KeepMAC: p.KeepMAC, Logf: logf,
		MaxFrame: lk.MTU + header.EthernetMinimumSize})
	if err != nil {
		return nil, err
	}
	var out *link.PcapWriter
	if p.OutPath != "" {
		f, err := os.Create(p.OutPath)
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("out: %w", err)
		}
		if out, err = link.NewPcapWriter(f); err != nil {
			f.Close()
			src.Close()
			return nil, fmt.Errorf("out: %w", err)
		}
	}
	f := os.NewFile(uintptr(fd), "pcap-link")
	c, err := net.FileConn(f) // a duplicate of fd
	f.Close()
	fd = -1
	if err == nil {
		if _, ok := c.(*net.UnixConn); !ok {
			c.Close()
			err = fmt.Errorf("the link socket is not a unix socket")
		}
	}
	if err != nil {
		src.Close()
		if out != nil {
			out.Close()
		}
		return nil, err
	}
	r := &pcapRelay{lk: lk, src: src, out: out, conn: c.(*net.UnixConn), logf: logf, state: "waiting", done: make(chan struct{})}
	r.wg.Add(1)
	go r.record()
	return r, nil
}

// record writes each frame the node sends to out, flushed at once so that
// a reader may follow the file while the lab runs.
func (r *pcapRelay) record() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := r.conn.Read(buf)
		if err != nil || n == 0 {
			return // the node's end closed, or we did
		}
		if r.out != nil {
			r.out.WriteFrame(buf[:n])
			r.out.Flush()
		}
		r.sent.Add(1)
		if reply, ok := r.src.Answer(buf[:n]); ok {
			// The node's resolution of a capture's sender, answered in
			// its place (a datagram write: whole, beside the replay's).
			r.conn.Write(reply)
		}
	}
}

// start begins the replay; the node must be up with its addresses, or the
// first frames would find none to take them and be dropped.
func (r *pcapRelay) start() {
	r.startOnce.Do(func() {
		r.setState("replaying")
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			stopped := ""
			r.src.Run(r.done, func(frame []byte) bool {
				// A write waits while the node's queue is full: speed=max
				// goes as fast as the node reads, and loses nothing.
				if _, err := r.conn.Write(frame); err != nil {
					stopped = "stopped: the interface's socket: " + err.Error()
					return false
				}
				return true
			})
			select {
			case <-r.done:
				stopped = "stopped: the lab is going down"
			default:
			}
			if stopped == "" {
				stopped = "done"
			}
			r.setState(stopped)
		}()
	})
}

func (r *pcapRelay) setState(s string) {
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
}

// status fills in the relay's state and counters.
func (r *pcapRelay) status(ps *PcapStatus) {
	r.mu.Lock()
	ps.State = r.state
	r.mu.Unlock()
	ps.Replayed, ps.Skipped, ps.Sent, ps.Answered = r.src.Replayed.Load(), r.src.Skipped.Load(), r.sent.Load(), r.src.Answered.Load()
}

func (r *pcapRelay) close() {
	r.closeOnce.Do(func() {
		close(r.done)
		r.conn.Close()
		r.wg.Wait()
		r.src.Close()
		if r.out != nil {
			if err := r.out.Close(); err != nil {
				r.logf("pcap link %d: out %s: %v", r.lk.Index, r.lk.Pcap.OutPath, err)
			}
		}
	})
}

// speedName writes a replay speed as the file gives it.
func speedName(speed float64) string {
	switch speed {
	case 0:
		return "max"
	case 1:
		return "realtime"
	}
	return strconv.FormatFloat(speed, 'g', -1, 64)
}
