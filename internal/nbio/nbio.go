// Package nbio makes system calls that do not wait (on non-blocking
// descriptors, or calls that never wait) without the Go runtime's
// system-call bookkeeping (entersyscall and exitsyscall), for the hot
// paths: the relays' reads and writes, the pollers' epoll calls, and the
// work of an intercepted call (the listener's ioctls, reading the caller's
// memory, copying its descriptor).
//
// That bookkeeping exists for calls that may block: it lets the runtime's
// monitor thread (sysmon) hand the caller's P to another thread. Its price
// here is the monitor itself: a call made while every P was idle wakes the
// monitor, which then polls every 20 µs until the process is idle again.
// A relay moving one small message wakes it once per message, and on a
// virtual machine each of those wake-ups and timer ticks costs an
// interrupt. Only when every system call of a path skips the bookkeeping
// does the monitor stay asleep. The calls here do not wait (the
// descriptors are non-blocking, waits are given no timeout), so nothing
// needs the hand-off. A call that could wait must not come here: it would
// hold its P for as long as it waits.
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

// bufPtr is p's first byte (nil for no bytes). Callers convert it to
// uintptr in the system call's argument list, which keeps p alive through
// the call.
func bufPtr(p []byte) unsafe.Pointer {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Pointer(&p[0])
}

// Read reads from a non-blocking descriptor (read(2)).
func Read(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
	return int(n), errnoErr(e)
}

// Write writes to a non-blocking descriptor (write(2)).
func Write(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
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

// PollNow reports which of fds are ready now, without waiting (ppoll(2)
// with a zero timeout).
func PollNow(fds []unix.PollFd) (int, error) {
	if len(fds) == 0 {
		return 0, nil
	}
	var zero unix.Timespec
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
		uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	return int(n), errnoErr(e)
}

// Ioctl makes an ioctl(2) that does not wait, with a pointer argument.
func Ioctl(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	return int(r), errnoErr(e)
}

// IoctlGetInt is an ioctl(2) that fills an int (SIOCINQ and the like).
func IoctlGetInt(fd int, req uintptr) (int, error) {
	var v int32
	_, err := Ioctl(fd, req, unsafe.Pointer(&v))
	return int(v), err
}

// FcntlInt is fcntl(2) with an integer argument (F_GETFL and the like).
func FcntlInt(fd, cmd, arg int) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	return int(r), errnoErr(e)
}

// GetsockoptTimeval reads a socket option holding a timeval
// (SO_RCVTIMEO, SO_SNDTIMEO).
func GetsockoptTimeval(fd, level, opt int) (unix.Timeval, error) {
	var tv unix.Timeval
	l := uint32(unsafe.Sizeof(tv))
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&tv)), uintptr(unsafe.Pointer(&l)), 0)
	return tv, errnoErr(e)
}

// Recv receives from a socket without asking whence (recvfrom(2) with
// no address); with MSG_TRUNC it returns a datagram's whole length.
func Recv(fd int, p []byte, flags int) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)), uintptr(flags), 0, 0)
	return int(n), errnoErr(e)
}

// Fstatat is fstatat(2). Only for paths that cannot wait on a device
// (/proc), which is what the hot paths stat.
func Fstatat(dirfd int, path string, st *unix.Stat_t, flags int) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	_, _, e := unix.RawSyscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(st)), uintptr(flags), 0, 0)
	return errnoErr(e)
}

// PidfdGetfd copies another process's descriptor (pidfd_getfd(2)).
func PidfdGetfd(pidfd, fd, flags int) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_PIDFD_GETFD, uintptr(pidfd), uintptr(fd), uintptr(flags))
	return int(r), errnoErr(e)
}

// Close closes a descriptor whose release cannot wait: a copy of a
// descriptor another process still holds, or one that has no data to
// flush.
func Close(fd int) error {
	_, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return errnoErr(e)
}

// ProcessVMReadv reads another process's memory (process_vm_readv(2)).
// The one wait it may have is for that memory to be paged in, which the
// process itself would wait for too.
func ProcessVMReadv(pid int, local []unix.Iovec, remote []unix.RemoteIovec) (int, error) {
	return processVM(unix.SYS_PROCESS_VM_READV, pid, local, remote)
}

// ProcessVMWritev writes another process's memory (process_vm_writev(2)).
func ProcessVMWritev(pid int, local []unix.Iovec, remote []unix.RemoteIovec) (int, error) {
	return processVM(unix.SYS_PROCESS_VM_WRITEV, pid, local, remote)
}

func processVM(nr uintptr, pid int, local []unix.Iovec, remote []unix.RemoteIovec) (int, error) {
	var lp, rp unsafe.Pointer
	if len(local) > 0 {
		lp = unsafe.Pointer(&local[0])
	}
	if len(remote) > 0 {
		rp = unsafe.Pointer(&remote[0])
	}
	n, _, e := unix.RawSyscall6(nr, uintptr(pid), uintptr(lp), uintptr(len(local)), uintptr(rp), uintptr(len(remote)), 0)
	return int(n), errnoErr(e)
}
