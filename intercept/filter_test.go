//go:build amd64

package intercept

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestFilterDecisions runs the seccomp program in the BPF VM against
// seccomp_data records. The VM loads words big-endian where seccomp loads
// them in the machine's order, so each word is stored big-endian here.
func TestFilterDecisions(t *testing.T) {
	raw, err := buildFilter()
	if err != nil {
		t.Fatal(err)
	}
	ins := make([]bpf.RawInstruction, len(raw))
	for i, r := range raw {
		ins[i] = bpf.RawInstruction{Op: r.Code, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog, ok := bpf.Disassemble(ins)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	const (
		allow  = unix.SECCOMP_RET_ALLOW
		notify = unix.SECCOMP_RET_USER_NOTIF
		enosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	data := func(arch, nr uint32, args ...uint64) []byte {
		b := make([]byte, 64)
		binary.BigEndian.PutUint32(b[0:], nr)
		binary.BigEndian.PutUint32(b[4:], arch)
		for i, a := range args {
			binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
			binary.BigEndian.PutUint32(b[16+8*i+4:], uint32(a>>32))
		}
		return b
	}
	x86 := uint32(unix.AUDIT_ARCH_X86_64)
	tests := []struct {
		name string
		in   []byte
		want uint32
	}{
		{"i386", data(unix.AUDIT_ARCH_I386, unix.SYS_SOCKET, unix.AF_INET), enosys},
		{"x32", data(x86, unix.SYS_SOCKET|x32SyscallBit, unix.AF_INET), enosys},
		{"io_uring_setup", data(x86, unix.SYS_IO_URING_SETUP), enosys},
		{"read", data(x86, unix.SYS_READ, 3), allow},
		{"socket AF_INET", data(x86, unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM), notify},
		{"socket AF_INET6", data(x86, unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_STREAM), notify},
		{"socket AF_UNIX", data(x86, unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM), allow},
		{"socket AF_NETLINK", data(x86, unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW), notify},
		{"socket AF_PACKET", data(x86, unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_RAW), allow},
		{"connect", data(x86, unix.SYS_CONNECT, 3), notify},
		{"getsockopt", data(x86, unix.SYS_GETSOCKOPT, 3), notify},
		{"sendmsg", data(x86, unix.SYS_SENDMSG, 3), notify},
		{"recvmmsg", data(x86, unix.SYS_RECVMMSG, 3), notify},
		{"sendto without address", data(x86, unix.SYS_SENDTO, 3, 0x1000, 10, 0, 0, 0), allow},
		{"sendto with address", data(x86, unix.SYS_SENDTO, 3, 0x1000, 10, 0, 0x7ffd0000, 16), notify},
		{"sendto with a high address", data(x86, unix.SYS_SENDTO, 3, 0x1000, 10, 0, 0x7f0000000000, 16), notify},
		{"recvfrom without address", data(x86, unix.SYS_RECVFROM, 3, 0x1000, 10, 0, 0, 0), allow},
		{"recvfrom with address", data(x86, unix.SYS_RECVFROM, 3, 0x1000, 10, 0, 0x7ffd0000, 0x7ffd0100), notify},
		{"ioctl FIONREAD", data(x86, unix.SYS_IOCTL, 3, unix.SIOCINQ), notify},
		{"ioctl TCGETS", data(x86, unix.SYS_IOCTL, 0, unix.TCGETS), allow},
		{"ioctl SIOCGIFCONF", data(x86, unix.SYS_IOCTL, 3, unix.SIOCGIFCONF), notify},
		{"ioctl SIOCGIFINDEX", data(x86, unix.SYS_IOCTL, 3, unix.SIOCGIFINDEX), notify},
		{"ioctl SIOCADDRT", data(x86, unix.SYS_IOCTL, 3, unix.SIOCADDRT), notify},
		{"ioctl SIOCGIFMAP", data(x86, unix.SYS_IOCTL, 3, unix.SIOCGIFMAP), notify},
		{"ioctl SIOCGSTAMP", data(x86, unix.SYS_IOCTL, 3, unix.SIOCGSTAMP), allow},
		{"ioctl past SIOCGIFMAP", data(x86, unix.SYS_IOCTL, 3, unix.SIOCGIFMAP+1), allow},
		{"ioctl with SIOCGIFCONF in the high word", data(x86, unix.SYS_IOCTL, 3, 0x1000000000|unix.SIOCGIFCONF), notify},
		{"write", data(x86, unix.SYS_WRITE, 1, 0x1000, 10, 0, 0x7ffd0000), allow},
	}
	for _, tt := range tests {
		got, err := vm.Run(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if uint32(got) != tt.want {
			t.Errorf("%s: filter returned %#x, want %#x", tt.name, got, tt.want)
		}
	}
}
