package server

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batch is a set of buffers for recvmmsg/sendmmsg: one system call moves
// up to len(bufs) frames.
type batch struct {
	bufs  [][]byte
	iovs  []unix.Iovec
	hdrs  []unix.Mmsghdr
	names []unix.RawSockaddrLinklayer
}

func newBatch(n, size int, withNames bool) *batch {
	b := &batch{bufs: make([][]byte, n), iovs: make([]unix.Iovec, n), hdrs: make([]unix.Mmsghdr, n)}
	if withNames {
		b.names = make([]unix.RawSockaddrLinklayer, n)
	}
	for i := range n {
		b.bufs[i] = make([]byte, size)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
	}
	return b
}

// recv reads up to len(b.bufs) messages without blocking; hdrs[i].Len is
// the length of message i.
func (b *batch) recv(fd int) (int, error) {
	for i := range b.hdrs {
		b.iovs[i].SetLen(len(b.bufs[i]))
		b.hdrs[i].Hdr.Flags = 0
		if b.names != nil {
			b.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			b.hdrs[i].Hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		}
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// sendList is the frames of one sendmmsg: views of buffers that a batch
// received into.
type sendList struct {
	iovs []unix.Iovec
	hdrs []unix.Mmsghdr
}

func newSendList(n int) *sendList {
	return &sendList{iovs: make([]unix.Iovec, 0, n), hdrs: make([]unix.Mmsghdr, 0, n)}
}

func (s *sendList) reset() { s.iovs, s.hdrs = s.iovs[:0], s.hdrs[:0] }

// add appends buf; the list never grows past its capacity, so the iovec
// pointers already handed out stay valid.
func (s *sendList) add(buf []byte) {
	s.iovs = append(s.iovs, unix.Iovec{Base: &buf[0]})
	s.iovs[len(s.iovs)-1].SetLen(len(buf))
	s.hdrs = append(s.hdrs, unix.Mmsghdr{})
	h := &s.hdrs[len(s.hdrs)-1].Hdr
	h.Iov = &s.iovs[len(s.iovs)-1]
	h.SetIovlen(1)
}

// send writes hdrs[:n] without blocking and returns how many went.
func sendmmsg(fd int, hdrs []unix.Mmsghdr) (int, error) {
	if len(hdrs) == 0 {
		return 0, nil
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// recvFrom waits on rc until a batch can be read and reads it: rerr is the
// read's error, err the wait's (the socket closed).
func (b *batch) recvFrom(rc syscall.RawConn) (n int, rerr, err error) {
	err = rc.Read(func(fd uintptr) bool {
		n, rerr = b.recv(int(fd))
		return rerr != unix.EAGAIN
	})
	return n, rerr, err
}
