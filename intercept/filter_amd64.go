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
)

const x32SyscallBit = 0x40000000

// notifiedSyscalls are the socket calls the supervisor answers. socket
// itself is notified only for AF_INET and AF_INET6 (below); everything
// else, including the data path (read, write, sendto, recvfrom without
// addresses, poll, epoll, close, shutdown), runs natively in the kernel on
// the injected AF_UNIX fd.
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
}

// buildFilter assembles the seccomp program:
//
//	arch != x86_64              -> ENOSYS (i386 int 0x80 and socketcall would bypass us)
//	nr has the x32 bit          -> ENOSYS (same reason)
//	io_uring_setup              -> ENOSYS (its socket ops bypass seccomp; programs fall back)
//	one of notifiedSyscalls     -> USER_NOTIF
//	socket(AF_INET|AF_INET6, …) -> USER_NOTIF
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
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET, SkipFalse: 3}, // -> allow
		bpf.LoadAbsolute{Off: offArg0, Size: 4},
	)
	toNotify = append(toNotify, len(prog))
	prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET})
	toNotify = append(toNotify, len(prog))
	prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET6})
	prog = append(prog, bpf.RetConstant{Val: retAllow})
	notifyAt := len(prog)
	prog = append(prog, bpf.RetConstant{Val: retNotify})
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
