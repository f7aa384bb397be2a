package sockets

import (
	"encoding/binary"
	"errors"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ustack/ustack/intercept"
)

// The x86_64 layouts of struct msghdr, struct mmsghdr and struct iovec.
const (
	sizeofMsghdr    = 56
	sizeofMmsghdr   = 64 // a msghdr, then msg_len and padding
	sizeofIovec     = 16
	offMsgNamelen   = 8
	offMsgControl   = 32
	offMsgControlen = 40
	offMsgFlags     = 48
	offMmsgLen      = 56
	maxIov          = 1024 // UIO_MAXIOV
)

// msghdr is a program's struct msghdr.
type msghdr struct {
	name    uint64
	namelen uint32
	iov     []iovec
	total   int // bytes the iovecs hold, capped at maxDatagram+1

	control    uint64 // msg_control
	controllen uint64 // msg_controllen
}

type iovec struct {
	base   uint64
	length int
}

// readMsghdr reads the msghdr at ptr and its iovecs, with the kernel's
// checks: EMSGSIZE for too many iovecs, EINVAL for a negative length,
// EFAULT for memory that is not there.
func readMsghdr(c *intercept.Call, ptr uint64) (msghdr, error) {
	var b [sizeofMsghdr]byte
	if err := c.ReadMem(ptr, b[:]); err != nil {
		return msghdr{}, err
	}
	h, iovPtr, iovLen, en := decodeMsghdr(b)
	if en != 0 {
		return msghdr{}, en
	}
	raw := make([]byte, sizeofIovec*iovLen)
	if err := c.ReadMem(iovPtr, raw); err != nil {
		return msghdr{}, err
	}
	if en := h.decodeIovecs(raw); en != 0 {
		return msghdr{}, en
	}
	return h, nil
}

// decodeMsghdr decodes a struct msghdr as the kernel copies one in (no
// name, no length; a negative length is refused and one above
// sockaddr_storage cut down to it) and says where its iovecs are and how
// many (EMSGSIZE above UIO_MAXIOV).
func decodeMsghdr(b [sizeofMsghdr]byte) (h msghdr, iovPtr uint64, iovLen int, en unix.Errno) {
	le := binary.NativeEndian
	h = msghdr{name: le.Uint64(b[0:]), namelen: le.Uint32(b[offMsgNamelen:]),
		control: le.Uint64(b[offMsgControl:]), controllen: le.Uint64(b[offMsgControlen:])}
	iovPtr, n := le.Uint64(b[16:]), le.Uint64(b[24:])
	if n > maxIov {
		return msghdr{}, 0, 0, unix.EMSGSIZE
	}
	if h.name == 0 {
		h.namelen = 0
	}
	if int32(h.namelen) < 0 {
		return msghdr{}, 0, 0, unix.EINVAL
	}
	h.namelen = min(h.namelen, sizeofSockaddrStor)
	return h, iovPtr, int(n), 0
}

// decodeIovecs fills in h's iovecs from raw, an array of struct iovec
// (EINVAL for a negative length), and the bytes they hold, capped at one
// more than the largest datagram.
func (h *msghdr) decodeIovecs(raw []byte) unix.Errno {
	le := binary.NativeEndian
	for i := 0; i+sizeofIovec <= len(raw); i += sizeofIovec {
		base, n := le.Uint64(raw[i:]), int64(le.Uint64(raw[i+8:]))
		if n < 0 {
			return unix.EINVAL
		}
		h.iov = append(h.iov, iovec{base: base, length: int(n)})
		h.total = min(h.total+int(min(n, maxDatagram+1)), maxDatagram+1)
	}
	return 0
}

// gather reads the bytes the iovecs point at: one datagram.
func (h msghdr) gather(c *intercept.Call) ([]byte, error) {
	if h.total > maxDatagram {
		return nil, unix.EMSGSIZE
	}
	out := make([]byte, 0, h.total)
	for _, v := range h.iov {
		if v.length == 0 {
			continue
		}
		b := make([]byte, v.length)
		if err := c.ReadMem(v.base, b); err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// scatter writes data across the iovecs.
func (h msghdr) scatter(c *intercept.Call, data []byte) error {
	for _, v := range h.iov {
		if len(data) == 0 {
			return nil
		}
		n := min(v.length, len(data))
		if err := c.WriteMem(v.base, data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// writeResult fills in the msghdr at ptr after a receive: the source
// address (at most msg_namelen bytes of it, and its full length in
// msg_namelen), the control messages the program asked for, and MSG_TRUNC
// when the datagram did not fit.
func (s *socket) writeResult(c *intercept.Call, ptr uint64, h msghdr, r received) error {
	le := binary.NativeEndian
	if h.name != 0 {
		sa := encodeSockaddr(r.from, s.domain)
		if err := c.WriteMem(h.name, sa[:min(int(h.namelen), len(sa))]); err != nil {
			return err
		}
		var nl [4]byte
		le.PutUint32(nl[:], uint32(len(sa)))
		if err := c.WriteMem(ptr+offMsgNamelen, nl[:]); err != nil {
			return err
		}
	}
	room := h.controllen
	if h.control == 0 {
		room = 0
	}
	control, ctrunc := packControl(s.controlMessages(r), room)
	if len(control) > 0 {
		if err := c.WriteMem(h.control, control); err != nil {
			return err
		}
	}
	var tail [12]byte // msg_controllen (8), msg_flags (4)
	le.PutUint64(tail[:], uint64(len(control)))
	var flags uint32
	if r.size > len(r.data) {
		flags |= unix.MSG_TRUNC
	}
	if ctrunc {
		flags |= unix.MSG_CTRUNC
	}
	le.PutUint32(tail[8:], flags)
	return c.WriteMem(ptr+offMsgControlen, tail[:])
}

// controlMessages are the ancillary data the program asked for (IP_PKTINFO,
// IP_RECVTTL, IP_RECVTOS, IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT,
// IPV6_RECVTCLASS), in the kernel's order, each a whole cmsg (header and
// data, unpadded). An IPv6 socket reports IPV6_PKTINFO for IPv4 datagrams
// too (v4-mapped), then their IPv4 messages; the hop limit and traffic
// class only for IPv6 ones.
func (s *socket) controlMessages(r received) [][]byte {
	s.mu.Lock()
	on := func(level, name int) bool { return s.inert[[2]int{level, name}] != 0 }
	pktinfo4, ttl, tos := on(unix.IPPROTO_IP, unix.IP_PKTINFO), on(unix.IPPROTO_IP, unix.IP_RECVTTL), on(unix.IPPROTO_IP, unix.IP_RECVTOS)
	pktinfo6, hops, tclass := on(unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO), on(unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT), on(unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS)
	s.mu.Unlock()
	cm := r.cm
	le := binary.NativeEndian
	integer := func(v uint32) []byte { return le.AppendUint32(nil, v) }
	var out [][]byte
	if s.domain == unix.AF_INET6 && pktinfo6 {
		// struct in6_pktinfo: ipi6_addr, ipi6_ifindex.
		var data []byte
		switch {
		case cm.HasIPv6PacketInfo:
			data = append(data, cm.IPv6PacketInfo.Addr.AsSlice()...)
			data = le.AppendUint32(data, uint32(cm.IPv6PacketInfo.NIC))
		case cm.HasIPPacketInfo:
			data = append(data, encodeSockaddr(tcpip.FullAddress{Addr: cm.PacketInfo.DestinationAddr}, unix.AF_INET6)[8:24]...)
			data = le.AppendUint32(data, uint32(cm.PacketInfo.NIC))
		}
		if data != nil {
			out = append(out, cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, data))
		}
	}
	if cm.HasIPv6PacketInfo { // an IPv6 datagram
		if hops && cm.HasHopLimit {
			out = append(out, cmsg(unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, integer(uint32(cm.HopLimit))))
		}
		if tclass && cm.HasTClass {
			out = append(out, cmsg(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, integer(cm.TClass)))
		}
		return out
	}
	if pktinfo4 && cm.HasIPPacketInfo {
		// struct in_pktinfo: ipi_ifindex, ipi_spec_dst, ipi_addr.
		data := le.AppendUint32(nil, uint32(cm.PacketInfo.NIC))
		data = append(data, cm.PacketInfo.LocalAddr.AsSlice()...)
		data = append(data, cm.PacketInfo.DestinationAddr.AsSlice()...)
		out = append(out, cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, data))
	}
	if ttl && cm.HasTTL {
		out = append(out, cmsg(unix.IPPROTO_IP, unix.IP_TTL, integer(uint32(cm.TTL))))
	}
	if tos && cm.HasTOS {
		out = append(out, cmsg(unix.IPPROTO_IP, unix.IP_TOS, []byte{cm.TOS})) // one byte
	}
	return out
}

// cmsg is one control message: struct cmsghdr, then data.
func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgLen(len(data)))
	le := binary.NativeEndian
	le.PutUint64(b, uint64(len(b)))
	le.PutUint32(b[8:], uint32(level))
	le.PutUint32(b[12:], uint32(typ))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// packControl lays out msgs in a buffer of room bytes as the kernel's
// put_cmsg does: each padded to CMSG_SPACE, the last one cut short (its
// cmsg_len saying so) and MSG_CTRUNC reported when room runs out, and
// nothing once not even a header fits.
func packControl(msgs [][]byte, room uint64) (out []byte, truncated bool) {
	for _, m := range msgs {
		left := room - uint64(len(out))
		if left < uint64(unix.CmsgLen(0)) {
			return out, true
		}
		if uint64(len(m)) > left {
			cut := append([]byte(nil), m[:left]...)
			binary.NativeEndian.PutUint64(cut, left)
			return append(out, cut...), true
		}
		padded := min(uint64(unix.CmsgSpace(len(m)-unix.CmsgLen(0))), left)
		out = append(out, m...)
		out = append(out, make([]byte, padded-uint64(len(m)))...)
	}
	return out, false
}

// sendmsg answers sendmsg(fd, msg, flags), with the control messages
// parseSendControl knows.
func (s *socket) sendmsg(c *intercept.Call) {
	h, err := readMsghdr(c, c.Arg(1))
	if err != nil {
		answerErr(c, err)
		return
	}
	control, err := readSendControl(c, h)
	if err != nil {
		answerErr(c, err)
		return
	}
	payload, err := h.gather(c)
	if err != nil {
		answerErr(c, err)
		return
	}
	flags := int(int32(c.Arg(2)))
	if flags&unix.MSG_OOB != 0 {
		c.Fail(unix.EOPNOTSUPP) // no out-of-band data on datagram sockets
		return
	}
	to, en := s.destination(c, h.name, int(h.namelen))
	if en != 0 {
		c.Fail(en)
		return
	}
	cm, en := parseSendControl(control, s.domain)
	if en != 0 {
		c.Fail(en)
		return
	}
	s.sendThen(c, flags, func(c *intercept.Call, nonblock bool) (int64, unix.Errno) {
		n, en := s.send(c, payload, to, cm, nonblock)
		return int64(n), en
	})
}

// recvmsg answers recvmsg(fd, msg, flags).
func (s *socket) recvmsg(c *intercept.Call) {
	ptr, flags := c.Arg(1), int(int32(c.Arg(2)))
	h, err := readMsghdr(c, ptr)
	if err != nil {
		answerErr(c, err)
		return
	}
	s.recvThen(c, int(int32(c.Arg(0))), h.total, flags, func(c *intercept.Call, r received, err error) {
		if err != nil {
			answerRecvErr(c, err)
			return
		}
		if err := h.scatter(c, r.data); err != nil {
			answerErr(c, err)
			return
		}
		if err := s.writeResult(c, ptr, h, r); err != nil {
			answerErr(c, err)
			return
		}
		c.Return(recvResult(r, flags))
	})
}

// sendmmsg answers sendmmsg(fd, vec, vlen, flags): datagrams in order
// until one fails; the count sent, or the first one's error. It runs in a
// goroutine of its own and may wait.
func (s *socket) sendmmsg(c *intercept.Call) {
	vec, vlen, flags := c.Arg(1), min(int(uint32(c.Arg(2))), maxIov), int(int32(c.Arg(3)))
	if flags&unix.MSG_OOB != 0 {
		c.Fail(unix.EOPNOTSUPP)
		return
	}
	nonblock := flags&unix.MSG_DONTWAIT != 0
	if !nonblock {
		fl, err := fdFlags(c)
		if err != nil {
			answerErr(c, err)
			return
		}
		nonblock = fl&unix.O_NONBLOCK != 0
	}
	sent := 0
	for ; sent < vlen; sent++ {
		ptr := vec + uint64(sent)*sizeofMmsghdr
		en := s.sendOne(c, ptr, nonblock)
		if en != 0 {
			if sent == 0 {
				c.Fail(en)
				return
			}
			break
		}
	}
	c.Return(int64(sent))
}

// sendOne sends the datagram of the mmsghdr at ptr and stores its length.
func (s *socket) sendOne(c *intercept.Call, ptr uint64, nonblock bool) unix.Errno {
	fail := func(err error) unix.Errno {
		var en unix.Errno
		switch {
		case err == nil:
			return 0
		case errors.As(err, &en):
			return en
		case errors.Is(err, intercept.ErrGone):
			return unix.EINTR
		}
		return unix.EFAULT
	}
	h, err := readMsghdr(c, ptr)
	if err != nil {
		return fail(err)
	}
	control, err := readSendControl(c, h)
	if err != nil {
		return fail(err)
	}
	payload, err := h.gather(c)
	if err != nil {
		return fail(err)
	}
	to, en := s.destination(c, h.name, int(h.namelen))
	if en != 0 {
		return en
	}
	cm, en := parseSendControl(control, s.domain)
	if en != 0 {
		return en
	}
	n, en := s.send(c, payload, to, cm, nonblock)
	if en != 0 {
		return en
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(n))
	return fail(c.WriteMem(ptr+offMmsgLen, b[:]))
}

// recvmmsg answers recvmmsg(fd, vec, vlen, flags, timeout). It runs in a
// goroutine of its own and may wait: for every datagram, or with
// MSG_WAITFORONE for the first only; the timeout bounds the whole call.
func (s *socket) recvmmsg(c *intercept.Call) {
	vec, vlen, flags := c.Arg(1), min(int(uint32(c.Arg(2))), maxIov), int(int32(c.Arg(3)))
	var deadline time.Time
	if tsPtr := c.Arg(4); tsPtr != 0 {
		var ts [16]byte
		if err := c.ReadMem(tsPtr, ts[:]); err != nil {
			answerErr(c, err)
			return
		}
		sec, nsec := int64(binary.NativeEndian.Uint64(ts[:])), int64(binary.NativeEndian.Uint64(ts[8:]))
		if sec < 0 || nsec < 0 || nsec >= 1e9 {
			c.Fail(unix.EINVAL)
			return
		}
		deadline = time.Now().Add(time.Duration(sec)*time.Second + time.Duration(nsec))
	}
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		answerErr(c, err)
		return
	}
	defer unix.Close(dup)
	block, rcvDeadline := blocking(dup, flags)
	if deadline.IsZero() || (!rcvDeadline.IsZero() && rcvDeadline.Before(deadline)) {
		deadline = rcvDeadline
	}
	got := 0
	for ; got < vlen; got++ {
		ptr := vec + uint64(got)*sizeofMmsghdr
		h, err := readMsghdr(c, ptr)
		if err == nil {
			var r received
			if block && (got == 0 || flags&unix.MSG_WAITFORONE == 0) {
				r, err = s.recvWait(c, dup, h.total, flags&^unix.MSG_WAITFORONE, deadline)
			} else {
				r, err = s.tryRecv(dup, h.total, flags&^unix.MSG_WAITFORONE)
			}
			if err == nil {
				err = h.scatter(c, r.data)
			}
			if err == nil {
				err = s.writeResult(c, ptr, h, r)
			}
			if err == nil {
				var b [4]byte
				binary.NativeEndian.PutUint32(b[:], uint32(recvResult(r, flags)))
				err = c.WriteMem(ptr+offMmsgLen, b[:])
			}
			r.free()
		}
		if err != nil {
			if got == 0 {
				answerRecvErr(c, err)
				return
			}
			break
		}
	}
	c.Return(int64(got))
}
