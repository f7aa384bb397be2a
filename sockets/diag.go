package sockets

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ustack/ustack/netview"
)

// What sock_diag (package netview) asks of the program sockets: so that ss
// under ustack run lists the stack's sockets with the inode of the
// program's fd (ss -p finds the process by it) and TCP_INFO as the program
// reads it.

// Holder tells which program socket ep serves: the inode of the program's
// end, its owner's user and the socket's family.
func (m *Manager) Holder(ep tcpip.Endpoint) (netview.Holder, bool) {
	s := m.serving(ep)
	if s == nil {
		return netview.Holder{}, false
	}
	s.mu.Lock()
	tid := s.ownerTid
	s.mu.Unlock()
	return netview.Holder{Inode: s.ino, UID: uidOf(tid), Family: s.domain}, true
}

// uidOf is the effective user of a thread (ours if it cannot be read).
func uidOf(tid int) uint32 {
	uid := uint32(os.Geteuid())
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return uid
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			var real, eff uint32
			if n, _ := fmt.Sscan(rest, &real, &eff); n == 2 {
				return eff
			}
		}
	}
	return uid
}

// TCPInfo is struct tcp_info for a TCP endpoint: the program socket's, as
// getsockopt(TCP_INFO) gives it, or for an endpoint no program holds (a
// connection not yet accepted, the Go API's) the same from the endpoint
// alone.
func (m *Manager) TCPInfo(ep tcpip.Endpoint) []byte {
	if s := m.serving(ep); s != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tcpInfo()
	}
	s := &socket{m: m, ep: ep}
	if te, ok := ep.(*tcp.Endpoint); ok && tcp.EndpointState(te.State()) == tcp.StateListen {
		s.state = stateListening
	}
	return s.tcpInfo()
}
