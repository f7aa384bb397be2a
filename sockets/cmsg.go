package sockets

import (
	"encoding/binary"
	"math"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ustack/ustack/intercept"
)

// optmemMax is net.core.optmem_max's default: the largest control buffer
// the kernel copies in for a send (ENOBUFS beyond).
const optmemMax = 128 << 10

// readSendControl reads a send's control buffer (msg_control,
// msg_controllen) as the kernel copies it in: ENOBUFS for a length above
// INT_MAX or optmem_max, EFAULT for memory that is not there.
func readSendControl(c *intercept.Call, h msghdr) ([]byte, error) {
	if h.controllen == 0 {
		return nil, nil
	}
	if h.controllen > math.MaxInt32 || h.controllen > optmemMax {
		return nil, unix.ENOBUFS
	}
	b := make([]byte, h.controllen)
	if err := c.ReadMem(h.control, b); err != nil {
		return nil, err
	}
	return b, nil
}

// sizeofCmsghdr is struct cmsghdr on x86_64: cmsg_len (8), level, type.
const sizeofCmsghdr = 16

// ipv6FlowInfo is IPV6_FLOWINFO (linux/in6.h), which x/sys lacks.
const ipv6FlowInfo = 11

// cmsgAlign rounds up to the alignment of control messages (CMSG_ALIGN).
func cmsgAlign(n uint64) uint64 { return (n + 7) &^ 7 }

// parseSendControl checks the control messages of a datagram send as
// Linux's UDP and ping sockets do and returns what netstack applies:
// IP_TTL and IPV6_HOPLIMIT. A message whose cmsg_len is below a header or
// runs past the buffer is EINVAL; so is an unknown type at SOL_SOCKET or
// at the socket's own IP level, or a value of the wrong size or range.
// Messages of other levels are skipped. IP_TOS, IPV6_TCLASS and the packet
// info messages are checked but not applied: netstack takes no such
// override on a send.
func parseSendControl(b []byte, domain int) (tcpip.SendableControlMessages, unix.Errno) {
	var cm tcpip.SendableControlMessages
	le := binary.NativeEndian
	for off := uint64(0); uint64(len(b))-off >= sizeofCmsghdr; {
		length := le.Uint64(b[off:])
		if length < sizeofCmsghdr || length > uint64(len(b))-off {
			return cm, unix.EINVAL
		}
		level, typ := int32(le.Uint32(b[off+8:])), int32(le.Uint32(b[off+12:]))
		data := b[off+sizeofCmsghdr : off+length]
		if en := checkCmsg(&cm, domain, level, typ, data); en != 0 {
			return cm, en
		}
		next := off + cmsgAlign(length)
		if next < off || next > uint64(len(b)) {
			break
		}
		off = next
	}
	return cm, 0
}

// checkCmsg checks one control message and records what it sets.
func checkCmsg(cm *tcpip.SendableControlMessages, domain int, level, typ int32, data []byte) unix.Errno {
	le := binary.NativeEndian
	integer := func() (int32, bool) {
		if len(data) != 4 {
			return 0, false
		}
		return int32(le.Uint32(data)), true
	}
	switch {
	case level == unix.SOL_SOCKET:
		switch typ {
		case unix.SCM_RIGHTS, unix.SCM_CREDENTIALS:
			return 0 // meaningless on an IP socket; Linux ignores them too
		case unix.SO_TIMESTAMPING_OLD, unix.SO_TIMESTAMPING_NEW, unix.SO_MARK, unix.SO_PRIORITY:
			if len(data) != 4 {
				return unix.EINVAL
			}
			return 0
		case unix.SCM_TXTIME:
			if len(data) != 8 {
				return unix.EINVAL
			}
			return 0
		}
		return unix.EINVAL
	case domain == unix.AF_INET && level == unix.IPPROTO_IP:
		switch typ {
		case unix.IP_TTL:
			v, ok := integer()
			if !ok || v < 1 || v > 255 {
				return unix.EINVAL
			}
			cm.HasTTL, cm.TTL = true, uint8(v)
			return 0
		case unix.IP_TOS:
			var v int32
			switch len(data) {
			case 4:
				v, _ = integer()
			case 1:
				v = int32(data[0])
			default:
				return unix.EINVAL
			}
			if v < 0 || v > 255 {
				return unix.EINVAL
			}
			return 0
		case unix.IP_PKTINFO:
			if len(data) != 12 { // struct in_pktinfo
				return unix.EINVAL
			}
			return 0
		case unix.IP_RETOPTS:
			return 0
		}
		return unix.EINVAL
	case domain == unix.AF_INET6 && level == unix.IPPROTO_IPV6:
		switch typ {
		case unix.IPV6_HOPLIMIT:
			v, ok := integer()
			if !ok || v < -1 || v > 255 {
				return unix.EINVAL
			}
			if v >= 0 {
				cm.HasHopLimit, cm.HopLimit = true, uint8(v)
			}
			return 0
		case unix.IPV6_TCLASS:
			v, ok := integer()
			if !ok || v < -1 || v > 255 {
				return unix.EINVAL
			}
			return 0
		case unix.IPV6_PKTINFO:
			if len(data) < 20 { // struct in6_pktinfo
				return unix.EINVAL
			}
			return 0
		case unix.IPV6_DONTFRAG, ipv6FlowInfo:
			return 0
		}
		return unix.EINVAL
	}
	return 0
}
