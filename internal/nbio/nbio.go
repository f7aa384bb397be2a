// Package nbio makes the system calls of the relays' hot paths on
// non-blocking descriptors without the Go runtime's system-call
// bookkeeping (entersyscall and exitsyscall).
//
// That bookkeeping exists for calls that may block: it lets the runtime's
// monitor thread (sysmon) hand the caller's P to another thread. Its price
// here is the monitor itself: a call made while every P was idle wakes the
// monitor, which then polls every 20 µs until the process is idle again.
// A relay moving one small message wakes it once per message, and on a
// virtual machine each of those wake-ups and timer ticks costs an
// interrupt. The calls here cannot block (the descriptors are
// non-blocking, epoll_wait is given no timeout), so nothing needs the
// hand-off.
package nbio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// errnoErr returns nil for 0 and the Errno otherwise. Like x/sys/unix's
// functions, the calls here return -1 with an error, and errors compare
// equal to unix.EAGAIN and the like.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// Read reads from a non-blocking descriptor (read(2)).
func Read(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	return int(n), errnoErr(e)
}

// Write writes to a non-blocking descriptor (write(2)).
func Write(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	return int(n), errnoErr(e)
}

// Peek reports whether a stream socket has data to read (1), is at its
// end (0), or neither (unix.EAGAIN), without taking any data
// (recv(2) of one byte with MSG_PEEK|MSG_DONTWAIT).
func Peek(fd int) (int, error) {
	var one [1]byte
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&one[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return int(n), errnoErr(e)
}

// EpollWait collects the events ready now, without waiting
// (epoll_wait(2) with a timeout of 0).
func EpollWait(epfd int, events []unix.EpollEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	return int(n), errnoErr(e)
}

// EpollCtl changes an epoll instance's interest list (epoll_ctl(2)).
func EpollCtl(epfd, op, fd int, event *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(event)), 0, 0)
	return errnoErr(e)
}
