package intercept

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets into struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // low 32 bits of args[0] on a little-endian machine
	offArg1 = 24
	offArg4 = 48
)

const x32SyscallBit = 0x40000000

// The socket ioctls on interfaces and routes, SIOCADDRT (0x890b) to
// SIOCGIFMAP (0x8970): the supervisor answers those it knows from the
// stack and passes the rest on to the kernel.
const (
	ifIoctlFirst = unix.SIOCADDRT
	ifIoctlLast  = unix.SIOCGIFMAP
)

// notifiedSyscalls are the socket calls the supervisor answers. socket
// itself is notified only for AF_INET, AF_INET6 and AF_NETLINK (the
// supervisor passes netlink families other than route and sock_diag on to
// the kernel), sendto and recvfrom only with an address, ioctl only for
// FIONREAD and the interface and routing requests (below); everything else,
// including the data path (read, write, send, recv, poll, epoll, close),
// runs natively in the kernel on the injected AF_UNIX fd. shutdown is
// notified because the AF_UNIX pair is always connected, where a TCP
// socket may not be (ENOTCONN) or may be listening.
// sendmsg, recvmsg and their mmsg forms carry their address inside a
// msghdr, out of the filter's sight, so all of them are notified; the
// supervisor lets those on other fds through at once.
var notifiedSyscalls = []uint32{
	unix.SYS_CONNECT,
	unix.SYS_BIND,
	unix.SYS_LISTEN,
	unix.SYS_ACCEPT,
	unix.SYS_ACCEPT4,
	unix.SYS_GETSOCKNAME,
	unix.SYS_GETPEERNAME,
	unix.SYS_SETSOCKOPT,
	unix.SYS_GETSOCKOPT,
	unix.SYS_SENDMSG,
	unix.SYS_RECVMSG,
	unix.SYS_SENDMMSG,
	unix.SYS_RECVMMSG,
	unix.SYS_SHUTDOWN,
}

// buildFilter assembles the seccomp program:
//
//	arch != x86_64              -> ENOSYS (i386 int 0x80 and socketcall would bypass us)
//	nr has the x32 bit          -> ENOSYS (same reason)
//	io_uring_setup              -> ENOSYS (its socket ops bypass seccomp; programs fall back)
//	one of notifiedSyscalls     -> USER_NOTIF
//	socket(AF_INET|AF_INET6|AF_NETLINK, …) -> USER_NOTIF
//	sendto/recvfrom with addr   -> USER_NOTIF (args[4] != 0: UDP's addresses)
//	ioctl(fd, FIONREAD, …)      -> USER_NOTIF (a datagram's size, not the queue's)
//	ioctl(fd, SIOCADDRT…SIOCGIFMAP, …) -> USER_NOTIF (interfaces and routes: the stack's)
//	anything else               -> ALLOW
func buildFilter() ([]unix.SockFilter, error) {
	const (
		retAllow  = unix.SECCOMP_RET_ALLOW
		retNotify = unix.SECCOMP_RET_USER_NOTIF
		retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipTrue: 1},
		bpf.RetConstant{Val: retENOSYS},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
		bpf.RetConstant{Val: retENOSYS},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_IO_URING_SETUP, SkipFalse: 1},
		bpf.RetConstant{Val: retENOSYS},
	}
	// Jumps to the final "notify" return are fixed up once its index is known.
	var toNotify []int
	for _, nr := range notifiedSyscalls {
		toNotify = append(toNotify, len(prog))
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr})
	}
	// Conditional cases, each "load nr; not this call -> next case; load
	// an argument; matching -> notify; else allow". Jumps to the shared
	// allow and notify returns are fixed up at the end.
	var toAllow []int
	var toAllowIf []int // conditional jumps whose true branch allows
	cases := []struct {
		nr      uint32
		off     uint32
		values  []uint32 // notify when the argument word equals one of these
		nonzero bool     // notify when the argument word is not zero
		// notify when the argument word is in [from, to]; the word is
		// checked against values first
		from, to uint32
	}{
		{nr: unix.SYS_SOCKET, off: offArg0, values: []uint32{unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK}},
		{nr: unix.SYS_IOCTL, off: offArg1, values: []uint32{unix.SIOCINQ}, from: ifIoctlFirst, to: ifIoctlLast},
		{nr: unix.SYS_SENDTO, off: offArg4, nonzero: true},
		{nr: unix.SYS_SENDTO, off: offArg4 + 4, nonzero: true},
		{nr: unix.SYS_RECVFROM, off: offArg4, nonzero: true},
		{nr: unix.SYS_RECVFROM, off: offArg4 + 4, nonzero: true},
	}
	for _, k := range cases {
		skip := len(k.values) + 2 // the argument load, the tests and the jump to allow
		if k.nonzero {
			skip = 2 // the argument load and the test
		}
		if k.to != 0 {
			skip += 2 // the two bounds
		}
		// Not this call: on to the next case.
		prog = append(prog,
			bpf.LoadAbsolute{Off: offNr, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: k.nr, SkipFalse: uint8(skip)},
			bpf.LoadAbsolute{Off: k.off, Size: 4},
		)
		if k.nonzero {
			// Zero: on to the next case (the other half of the pointer).
			toNotify = append(toNotify, len(prog))
			prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0})
			continue
		}
		for _, v := range k.values {
			toNotify = append(toNotify, len(prog))
			prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v})
		}
		if k.to != 0 {
			// Below from: allow; else at most to: notify.
			toAllowIf = append(toAllowIf, len(prog))
			prog = append(prog, bpf.JumpIf{Cond: bpf.JumpLessThan, Val: k.from})
			toNotify = append(toNotify, len(prog))
			prog = append(prog, bpf.JumpIf{Cond: bpf.JumpLessOrEqual, Val: k.to})
		}
		toAllow = append(toAllow, len(prog))
		prog = append(prog, bpf.Jump{})
	}
	allowAt := len(prog)
	prog = append(prog, bpf.RetConstant{Val: retAllow})
	notifyAt := len(prog)
	prog = append(prog, bpf.RetConstant{Val: retNotify})
	for _, i := range toAllow {
		prog[i] = bpf.Jump{Skip: uint32(allowAt - i - 1)}
	}
	for _, i := range toAllowIf {
		j := prog[i].(bpf.JumpIf)
		j.SkipTrue = uint8(allowAt - i - 1)
		prog[i] = j
	}
	for _, i := range toNotify {
		j := prog[i].(bpf.JumpIf)
		skip := notifyAt - i - 1
		if skip > 255 {
			return nil, fmt.Errorf("seccomp filter: jump of %d instructions is too long", skip)
		}
		j.SkipTrue = uint8(skip)
		prog[i] = j
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assembling the seccomp filter: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}
