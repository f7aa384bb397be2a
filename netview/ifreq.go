package netview

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// The interface ioctls, after net/core/dev_ioctl.c and
// net/ipv4/devinet.c: glibc's if_nametoindex and if_indextoname, Java's
// NetworkInterface, ifconfig and many servers ask these on any socket, and
// the kernel answers for the socket's network namespace whatever its
// family.

// SizeofIfreq is struct ifreq on x86_64: ifr_name, then a 24-byte union.
const SizeofIfreq = 40

// IfreqRequests are the ioctls Ifreq answers, and SIOCGIFCONF, which
// IfConf answers.
var IfreqRequests = []uint32{
	unix.SIOCGIFNAME, unix.SIOCGIFCONF, unix.SIOCGIFFLAGS, unix.SIOCSIFFLAGS,
	unix.SIOCGIFADDR, unix.SIOCSIFADDR, unix.SIOCGIFDSTADDR, unix.SIOCSIFDSTADDR,
	unix.SIOCGIFBRDADDR, unix.SIOCSIFBRDADDR, unix.SIOCGIFNETMASK, unix.SIOCSIFNETMASK,
	unix.SIOCGIFMETRIC, unix.SIOCGIFMTU, unix.SIOCSIFMTU, unix.SIOCSIFHWADDR,
	unix.SIOCGIFHWADDR, unix.SIOCGIFINDEX, unix.SIOCGIFTXQLEN, unix.SIOCSIFTXQLEN,
	unix.SIOCGIFMAP, unix.SIOCETHTOOL, unix.SIOCADDRT, unix.SIOCDELRT,
}

// IPv4Only reports whether Linux answers req only on AF_INET sockets (in
// devinet_ioctl): the requests on an interface's IPv4 address that IPv6
// sockets do not take too. Other sockets get ENOTTY for them.
func IPv4Only(req uint32) bool {
	switch req {
	case unix.SIOCGIFADDR, unix.SIOCGIFDSTADDR, unix.SIOCGIFBRDADDR, unix.SIOCSIFBRDADDR,
		unix.SIOCGIFNETMASK, unix.SIOCSIFNETMASK:
		return true
	}
	return false
}

// ifrName is ifr_name as the kernel reads it: at most 15 bytes.
func ifrName(ifr []byte) string {
	return attrString(ifr[:unix.IFNAMSIZ-1])
}

// sockaddrIn4 is struct sockaddr_in holding a, 16 bytes.
func sockaddrIn4(a [4]byte) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint16(b, unix.AF_INET)
	copy(b[4:8], a[:])
	return b
}

// Ifreq answers ioctl(fd, req, &ifr) for one of IfreqRequests other than
// SIOCGIFCONF: it returns the ifreq to write back (nil when nothing is
// written) or the errno. Changes other than the link going up or down and
// its MTU are refused with EOPNOTSUPP: ip addr and ip route make them.
func (v *View) Ifreq(req uint32, ifr []byte) ([]byte, unix.Errno) {
	if len(ifr) < SizeofIfreq {
		return nil, unix.EFAULT
	}
	out := append([]byte(nil), ifr[:SizeofIfreq]...)
	data := out[unix.IFNAMSIZ:]
	le := binary.NativeEndian
	switch req {
	case unix.SIOCGIFNAME:
		l, ok := v.linkByIndex(int32(le.Uint32(data)))
		if !ok {
			return nil, unix.ENODEV
		}
		clear(out[:unix.IFNAMSIZ])
		copy(out[:unix.IFNAMSIZ-1], l.info.Name)
		return out, 0
	case unix.SIOCSIFADDR, unix.SIOCSIFDSTADDR, unix.SIOCSIFBRDADDR, unix.SIOCSIFNETMASK, unix.SIOCSIFHWADDR,
		unix.SIOCSIFTXQLEN, unix.SIOCETHTOOL, unix.SIOCADDRT, unix.SIOCDELRT:
		return nil, unix.EOPNOTSUPP
	}
	l, ok := v.linkByName(ifrName(ifr))
	if !ok {
		return nil, unix.ENODEV
	}
	switch req {
	case unix.SIOCGIFINDEX:
		le.PutUint32(data, uint32(l.index))
	case unix.SIOCGIFFLAGS:
		le.PutUint16(data, uint16(l.flags()))
	case unix.SIOCSIFFLAGS:
		want := uint32(le.Uint16(data))
		if (want^l.flags())&fixedFlags&0xffff != 0 {
			return nil, unix.EOPNOTSUPP
		}
		if up := want&unix.IFF_UP != 0; up != l.up() {
			if err := v.st.SetLinkUp(l.info.Name, up); err != nil {
				en, _ := errnoOf(err)
				return nil, en
			}
		}
		return nil, 0
	case unix.SIOCGIFMTU:
		le.PutUint32(data, l.info.MTU)
	case unix.SIOCSIFMTU:
		if err := v.st.SetMTU(l.info.Name, int(int32(le.Uint32(data)))); err != nil {
			en, _ := errnoOf(err)
			return nil, en
		}
		return nil, 0
	case unix.SIOCGIFHWADDR:
		clear(data)
		le.PutUint16(data, l.hwType())
		mac, _ := l.mac()
		copy(data[2:16], mac)
	case unix.SIOCGIFTXQLEN:
		le.PutUint32(data, txQueueLen)
	case unix.SIOCGIFMETRIC:
		le.PutUint32(data, 0)
	case unix.SIOCGIFMAP:
		clear(data)
	case unix.SIOCGIFADDR, unix.SIOCGIFDSTADDR, unix.SIOCGIFNETMASK, unix.SIOCGIFBRDADDR:
		var first *addr
		for _, a := range v.addrs(unix.AF_INET) {
			if a.link.id == l.id {
				first = &a
				break
			}
		}
		if first == nil {
			return nil, unix.EADDRNOTAVAIL
		}
		var ip [4]byte
		switch req {
		case unix.SIOCGIFADDR, unix.SIOCGIFDSTADDR:
			ip = first.prefix.Addr().As4()
		case unix.SIOCGIFNETMASK:
			binary.BigEndian.PutUint32(ip[:], ^uint32(0)<<(32-first.prefix.Bits()))
		case unix.SIOCGIFBRDADDR:
			if b, ok := first.broadcast(); ok {
				ip = b.As4()
			}
		}
		clear(data)
		copy(data, sockaddrIn4(ip))
	default:
		return nil, unix.EINVAL
	}
	return out, 0
}

// IfConf answers SIOCGIFCONF: one struct ifreq (name and sockaddr_in) per
// IPv4 address, by interface index.
func (v *View) IfConf() []byte {
	var out []byte
	for _, a := range v.addrs(unix.AF_INET) {
		ifr := make([]byte, SizeofIfreq)
		copy(ifr[:unix.IFNAMSIZ-1], a.link.info.Name)
		copy(ifr[unix.IFNAMSIZ:], sockaddrIn4(a.prefix.Addr().As4()))
		out = append(out, ifr...)
	}
	return out
}
