package sockets

import (
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/intercept"
)

// A send on a TCP socket that carries an address: Linux reads the address
// (EINVAL for a length above sockaddr_storage, EFAULT for memory that is
// not there) and then ignores it, sending on the connection. The
// program's end is an AF_UNIX socket, which would refuse the address
// (EISCONN), so the data is read out of the program and written into its
// end here, where the kernel would have put it.

// maxStreamSend is the most one send moves, as Linux's MAX_RW_COUNT.
const maxStreamSend = 1<<31 - 4096

// streamSendto answers sendto(fd, buf, len, flags, addr, addrlen) on a TCP
// socket (only calls with an address are notified).
func (s *socket) streamSendto(c *intercept.Call) {
	if _, err := readAddrArg(c, c.Arg(4), int(int32(c.Arg(5)))); err != nil {
		answerErr(c, err)
		return
	}
	length := int(min(c.Arg(2), maxStreamSend))
	s.streamSend(c, []iovec{{base: c.Arg(1), length: length}}, int(int32(c.Arg(3))))
}

// streamSendmsg answers sendmsg(fd, msg, flags) on a TCP socket: without
// an address it is the kernel's, on the program's end.
func (s *socket) streamSendmsg(c *intercept.Call) {
	var name [8]byte
	if err := c.ReadMem(c.Arg(1), name[:]); err != nil {
		answerErr(c, err)
		return
	}
	if binary.NativeEndian.Uint64(name[:]) == 0 {
		c.Continue()
		return
	}
	h, err := readMsghdr(c, c.Arg(1))
	if err != nil {
		answerErr(c, err)
		return
	}
	if _, err := readAddrArg(c, h.name, int(h.namelen)); err != nil {
		answerErr(c, err)
		return
	}
	control, err := readSendControl(c, h)
	if err != nil {
		answerErr(c, err)
		return
	}
	// TCP looks only at the socket-level messages (domain 0: no IP level
	// is the socket's own here).
	if _, en := parseSendControl(control, 0); en != 0 {
		c.Fail(en)
		return
	}
	s.streamSend(c, h.iov, int(int32(c.Arg(2))))
}

// streamSend writes the bytes of iov into the program's end of a
// connected TCP socket; a blocking send waits in a goroutine of its own
// until all are written.
func (s *socket) streamSend(c *intercept.Call, iov []iovec, flags int) {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	if st != stateConnected && st != stateConnecting {
		failEPIPE(c, flags)
		return
	}
	dup, err := c.GetFD(int(int32(c.Arg(0))))
	if err != nil {
		answerErr(c, err)
		return
	}
	nonblock := flags&unix.MSG_DONTWAIT != 0
	if !nonblock {
		fl, err := unix.FcntlInt(uintptr(dup), unix.F_GETFL, 0)
		if err != nil {
			unix.Close(dup)
			answerErr(c, err)
			return
		}
		nonblock = fl&unix.O_NONBLOCK != 0
	}
	answer := func(c *intercept.Call) {
		defer unix.Close(dup)
		n, en := pushStream(c, dup, iov, flags, !nonblock)
		if en == unix.EPIPE {
			failEPIPE(c, flags)
			return
		}
		answerCount(c, n, en)
	}
	if nonblock {
		answer(c)
		return
	}
	a := s.m.activity()
	a.begin()
	c.Park(func(c *intercept.Call) {
		defer a.end()
		answer(c)
	})
}

// pushStream copies iov from the program into dup, a copy of the
// program's end, in pieces. It returns the bytes written, or the error if
// none were: EFAULT for memory that is not there, EAGAIN when dup is full
// and wait is false. With wait it polls for room until all is written or
// the caller stops waiting.
func pushStream(c *intercept.Call, dup int, iov []iovec, flags int, wait bool) (int64, unix.Errno) {
	const piece = 64 << 10
	buf := make([]byte, piece)
	sendFlags := flags&(unix.MSG_MORE|unix.MSG_EOR) | unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL
	var sent int64
	result := func(en unix.Errno) (int64, unix.Errno) {
		if sent > 0 {
			return sent, 0
		}
		return 0, en
	}
	for _, v := range iov {
		for off := 0; off < v.length; {
			n := min(piece, v.length-off)
			if err := c.ReadMem(v.base+uint64(off), buf[:n]); err != nil {
				return result(unix.EFAULT)
			}
			for done := 0; done < n; {
				m, err := unix.SendmsgN(dup, buf[done:n], nil, nil, sendFlags)
				if err == unix.EAGAIN {
					if !wait {
						sent += int64(done)
						return result(unix.EAGAIN)
					}
					p := []unix.PollFd{{Fd: int32(dup), Events: unix.POLLOUT}}
					unix.Poll(p, 200)
					if !c.Valid() {
						return sent + int64(done), unix.EINTR
					}
					continue
				}
				if err != nil {
					sent += int64(done)
					en, _ := err.(unix.Errno)
					if en == 0 {
						en = unix.EIO
					}
					return result(en)
				}
				done += m
			}
			off += n
			sent += int64(n)
		}
	}
	return sent, 0
}

// failEPIPE answers EPIPE and, unless the send said MSG_NOSIGNAL, raises
// SIGPIPE in the calling thread, as the kernel's send does.
func failEPIPE(c *intercept.Call, flags int) {
	if flags&unix.MSG_NOSIGNAL == 0 {
		if tgid, err := intercept.Tgid(c.Tid()); err == nil {
			unix.Tgkill(tgid, c.Tid(), unix.SIGPIPE)
		}
	}
	c.Fail(unix.EPIPE)
}
