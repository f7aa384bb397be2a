package sockets

import (
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/netview"
)

// Interface ioctls (SIOCGIFCONF, SIOCGIFADDR, SIOCGIFINDEX...) are
// answered from the stack on any socket the program holds, of any family,
// as the kernel answers them for the socket's network namespace. On other
// fds, and for the requests netview does not know, they stay the
// kernel's.

// ifIoctls are the requests answered here.
var ifIoctls = func() map[uint32]bool {
	m := map[uint32]bool{}
	for _, r := range netview.IfreqRequests {
		m[r] = true
	}
	return m
}()

// interfaceIoctl answers ioctl(fd, req, arg) for an interface request,
// and passes other socket ioctls of the notified range on to the kernel;
// false for FIONREAD, which is for the socket's own handler.
func (m *Manager) interfaceIoctl(c *intercept.Call) bool {
	req := uint32(c.Arg(1)) // the kernel takes the request as an unsigned int
	if req == unix.SIOCINQ {
		return false
	}
	if !ifIoctls[req] {
		c.Continue()
		return true
	}
	v := m.network()
	if v == nil {
		c.Continue()
		return true
	}
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		answerErr(c, err)
		return true
	}
	var st unix.Stat_t
	err = unix.Fstat(dup, &st)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(dup)
		c.Continue() // not a socket: the kernel refuses it
		return true
	}
	domain := m.socketDomain(dup, st.Ino)
	unix.Close(dup)
	if netview.IPv4Only(req) && domain != unix.AF_INET {
		// Linux answers the address requests in its AF_INET socket code
		// only; on other sockets no layer knows them.
		c.Fail(unix.ENOTTY)
		return true
	}
	if req == unix.SIOCGIFCONF {
		ifconf(c, v)
		return true
	}
	ifr := make([]byte, netview.SizeofIfreq)
	if err := c.ReadMem(c.Arg(2), ifr); err != nil {
		answerErr(c, err)
		return true
	}
	out, en := v.Ifreq(req, ifr)
	if en != 0 {
		if en == unix.EOPNOTSUPP {
			if _, seen := m.nl.refused.LoadOrStore(req, true); !seen {
				m.logf("refused interface ioctl %#x: the user-level stack does not make this change (EOPNOTSUPP); ip addr, ip route and ip link set do", req)
			}
		}
		c.Fail(en)
		return true
	}
	if out != nil {
		if err := c.WriteMem(c.Arg(2), out); err != nil {
			answerErr(c, err)
			return true
		}
	}
	c.Return(0)
	return true
}

// ifconf answers SIOCGIFCONF: struct ifconf is ifc_len (an int, then 4
// bytes of padding) and ifc_buf. Without a buffer the length needed is
// returned; with one, as many whole entries as fit, and their length.
func ifconf(c *intercept.Call, v *netview.View) {
	var hdr [16]byte
	if err := c.ReadMem(c.Arg(2), hdr[:]); err != nil {
		answerErr(c, err)
		return
	}
	le := binary.NativeEndian
	room := int(int32(le.Uint32(hdr[:])))
	buf := le.Uint64(hdr[8:])
	entries := v.IfConf()
	n := len(entries)
	if buf != 0 {
		n = min(max(room, 0)/netview.SizeofIfreq*netview.SizeofIfreq, len(entries))
		if err := c.WriteMem(buf, entries[:n]); err != nil {
			answerErr(c, err)
			return
		}
	}
	le.PutUint32(hdr[:4], uint32(n))
	if err := c.WriteMem(c.Arg(2), hdr[:4]); err != nil {
		answerErr(c, err)
		return
	}
	c.Return(0)
}

// socketDomain is the address family of the program's socket behind dup
// (inode ino): a stack socket's own, a netlink socket's, else the kernel's
// (SO_DOMAIN).
func (m *Manager) socketDomain(dup int, ino uint64) int {
	m.mu.Lock()
	s := m.socks[ino]
	m.mu.Unlock()
	if s != nil {
		return s.domain
	}
	if m.netlinkByInode(ino) != nil {
		return unix.AF_NETLINK
	}
	d, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return unix.AF_UNSPEC
	}
	return d
}
