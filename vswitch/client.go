package vswitch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/control"
)

const protocolVersion = 1

// hello is a client's first message.
type hello struct {
	Version int    `json:"ustack_switch"`
	Op      string `json:"op"` // "attach" or "status"
	Label   string `json:"label,omitempty"`
	MTU     int    `json:"mtu,omitempty"` // 0: the switch's
}

// welcome is the switch's answer to an attach.
type welcome struct {
	Port  int    `json:"port,omitempty"`
	MTU   int    `json:"mtu,omitempty"`
	Error string `json:"error,omitempty"`
}

// Status is the answer to a status request: the switch and, per port, the
// process on it, the addresses learned there and its counters. In and out
// are the switch's view: frames in came from the port's peer.
type Status struct {
	Name         string       `json:"name"`
	PID          int          `json:"pid"`
	Socket       string       `json:"socket"`
	MTU          int          `json:"mtu"`
	AgingSeconds float64      `json:"aging_seconds"`
	Learned      int          `json:"learned"` // addresses
	Flooded      uint64       `json:"flooded"` // frames sent to every other port
	Ports        []PortStatus `json:"ports"`
}

// PortStatus is one port of Status.
type PortStatus struct {
	Port    int    `json:"port"`
	Label   string `json:"label"`   // the stack's name, when it gave one
	PID     int    `json:"pid"`     // of the process on the port
	Command string `json:"command"` // its /proc/PID/comm
	// MACs are the addresses learned on the port (at most 64; MoreMACs
	// counts the rest).
	MACs     []string `json:"macs"`
	MoreMACs int      `json:"more_macs,omitempty"`

	InFrames   uint64 `json:"in_frames"`
	InBytes    uint64 `json:"in_bytes"` // Ethernet frames, without the virtio-net header
	InDropped  uint64 `json:"in_dropped"`
	OutFrames  uint64 `json:"out_frames"`
	OutBytes   uint64 `json:"out_bytes"`
	OutDropped uint64 `json:"out_dropped"` // the port's queue was full, or the peer closed
	// Queued is how many frames wait in the port's egress queue for the
	// peer to read (its backlog).
	Queued int `json:"queued"`
}

// NotRunningError says that no switch of the name is running.
type NotRunningError struct{ Name, Socket string }

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("no switch named %s is running on %s (start one with: ustack switch %s)", e.Name, e.Socket, e.Name)
}

// MTUError says that the switch carries smaller frames than asked for.
type MTUError struct {
	Switch   string
	MTU, Max int
}

func (e *MTUError) Error() string {
	return fmt.Sprintf("%d is larger than switch %s carries (%d): leave the MTU out to take the switch's, or start the switch with --mtu %d", e.MTU, e.Switch, e.Max, e.MTU)
}

// Port is an attachment to a switch.
type Port struct {
	// Fd is the connected SOCK_SEQPACKET socket that carries the frames,
	// each with a virtio-net header in front. The caller owns it; closing
	// it frees the port.
	Fd     int
	Number int
	// MTU is the largest IP packet of a frame that is not a TCP
	// super-frame: the one asked for, or the switch's.
	MTU int
}

// Attach connects to the switch called name and takes a port. label names
// the port in the switch's status (a stack's name; may be empty). mtu 0
// takes the switch's MTU; a larger one than the switch's is refused.
func Attach(name, label string, mtu int) (*Port, error) {
	fd, err := connect(name)
	if err != nil {
		return nil, err
	}
	b, err := exchange(fd, name, hello{Version: protocolVersion, Op: "attach", Label: label, MTU: mtu})
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	var w welcome
	if err := json.Unmarshal(b, &w); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("switch %s: a garbled answer: %w", name, err)
	}
	if w.Error != "" {
		unix.Close(fd)
		if w.MTU != 0 && mtu > w.MTU {
			return nil, &MTUError{Switch: name, MTU: mtu, Max: w.MTU}
		}
		return nil, fmt.Errorf("switch %s: %s", name, w.Error)
	}
	// The frames' own way is the stack's: its endpoint polls, and the
	// timeout of the exchange must not cut its reads short.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{})
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, SocketBuffer)
	if mtu == 0 {
		mtu = w.MTU
	}
	return &Port{Fd: fd, Number: w.Port, MTU: mtu}, nil
}

// GetStatus asks the switch called name for its Status.
func GetStatus(name string) (*Status, error) {
	fd, err := connect(name)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b, err := exchange(fd, name, hello{Version: protocolVersion, Op: "status"})
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("switch %s: a garbled status: %w", name, err)
	}
	return &st, nil
}

// connect opens a connection to the switch's socket and checks that the
// switch is the user's own (or root's).
func connect(name string) (int, error) {
	path, err := control.ClaimedSocketPath(Kind, name)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("switch socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return -1, &NotRunningError{Name: name, Socket: path}
		}
		return -1, fmt.Errorf("connecting to %s: %w", path, err)
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil || int(cred.Uid) != os.Getuid() && cred.Uid != 0 {
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("switch %s: reading its credentials: %w", name, err)
		}
		return -1, fmt.Errorf("switch %s on %s belongs to uid %d, not to you: refused", name, path, cred.Uid)
	}
	return fd, nil
}

// exchange sends h and returns the switch's one-message answer.
func exchange(fd int, name string, h hello) ([]byte, error) {
	b, _ := json.Marshal(h)
	if _, err := unix.Write(fd, b); err != nil {
		return nil, fmt.Errorf("switch %s: %w", name, err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: int64(helloTimeout / time.Second)})
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return nil, fmt.Errorf("switch %s did not answer within %v", name, helloTimeout)
		case err != nil:
			return nil, fmt.Errorf("switch %s: %w", name, err)
		case n == 0:
			return nil, fmt.Errorf("switch %s closed the connection without an answer", name)
		}
		return buf[:n], nil
	}
}
