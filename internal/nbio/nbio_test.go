package nbio

import (
	"errors"
	"os"
	"reflect"
	"strconv"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pair returns a non-blocking AF_UNIX stream pair.
func pair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// The calls give what x/sys/unix's give, results and errors alike, at
// each state of a stream: empty, with data, at its end, closed.
func TestSameAsUnix(t *testing.T) {
	type result struct {
		n   int
		err error
	}
	buf := make([]byte, 16)
	ops := []struct {
		name     string
		ours, ux func(fd int) (int, error)
	}{
		{"read", func(fd int) (int, error) { return Read(fd, buf) }, func(fd int) (int, error) { return unix.Read(fd, buf) }},
		{"read-empty-buffer", func(fd int) (int, error) { return Read(fd, nil) }, func(fd int) (int, error) { return unix.Read(fd, nil) }},
		{"peek", Peek, func(fd int) (int, error) {
			var one [1]byte
			n, _, err := unix.Recvfrom(fd, one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return n, err
		}},
		{"write", func(fd int) (int, error) { return Write(fd, []byte("hi")) }, func(fd int) (int, error) { return unix.Write(fd, []byte("hi")) }},
	}
	states := []struct {
		name  string
		setup func(t *testing.T) int // the descriptor to call on
	}{
		{"empty", func(t *testing.T) int { a, _ := pair(t); return a }},
		{"data", func(t *testing.T) int { a, b := pair(t); unix.Write(b, []byte("hello")); return a }},
		{"peer-shut", func(t *testing.T) int { a, b := pair(t); unix.Shutdown(b, unix.SHUT_WR); return a }},
		{"peer-closed", func(t *testing.T) int {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fds[1])
			t.Cleanup(func() { unix.Close(fds[0]) })
			return fds[0]
		}},
		{"bad-fd", func(t *testing.T) int { return -1 }},
	}
	for _, op := range ops {
		for _, st := range states {
			t.Run(op.name+"/"+st.name, func(t *testing.T) {
				var got, want result
				got.n, got.err = op.ours(st.setup(t))
				want.n, want.err = op.ux(st.setup(t))
				if got != want {
					t.Fatalf("got (%d, %v), x/sys/unix gives (%d, %v)", got.n, got.err, want.n, want.err)
				}
			})
		}
	}
}

func TestReadWhatWasWritten(t *testing.T) {
	a, b := pair(t)
	if n, err := Write(b, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	buf := make([]byte, 16)
	n, err := Read(a, buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}
	if _, err := Read(a, buf); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("Read of an empty socket: %v, want EAGAIN", err)
	}
}

func TestEpoll(t *testing.T) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	a, b := pair(t)
	if err := EpollCtl(epfd, unix.EPOLL_CTL_ADD, a, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7}); err != nil {
		t.Fatal(err)
	}
	if err := EpollCtl(epfd, unix.EPOLL_CTL_ADD, a, &unix.EpollEvent{Events: unix.EPOLLIN}); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("second ADD: %v, want EEXIST", err)
	}
	events := make([]unix.EpollEvent, 4)
	if n, err := EpollWait(epfd, events); n != 0 || err != nil {
		t.Fatalf("nothing ready: %d, %v", n, err)
	}
	unix.Write(b, []byte("x"))
	n, err := EpollWait(epfd, events)
	if n != 1 || err != nil || events[0].Fd != 7 || events[0].Events&unix.EPOLLIN == 0 {
		t.Fatalf("one ready: %d, %v, %+v", n, err, events[0])
	}
	if n, err := EpollWait(epfd, nil); n != 0 || err != nil {
		t.Fatalf("no room for events: %d, %v", n, err)
	}
	if _, err := EpollWait(-1, events); !errors.Is(err, unix.EBADF) {
		t.Fatalf("bad epoll fd: %v, want EBADF", err)
	}
}

// The calls the intercepted calls' handlers make give what x/sys/unix's
// give, on a socket with a datagram queued and on a bad descriptor.
func TestHandlerCallsSameAsUnix(t *testing.T) {
	dgramPair := func(t *testing.T) int {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		unix.Write(fds[1], []byte("a datagram"))
		unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3, Usec: 5})
		return fds[0]
	}
	buf := make([]byte, 4)
	calls := []struct {
		name     string
		ours, ux func(fd int) (any, error)
	}{
		{"recv-peek-trunc", func(fd int) (any, error) {
			n, err := Recv(fd, buf, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
			return n, err
		}, func(fd int) (any, error) {
			n, _, _, _, err := unix.Recvmsg(fd, buf, nil, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
			return n, err
		}},
		{"siocinq", func(fd int) (any, error) { return IoctlGetInt(fd, unix.SIOCINQ) },
			func(fd int) (any, error) { return unix.IoctlGetInt(fd, unix.SIOCINQ) }},
		{"getfl", func(fd int) (any, error) { return FcntlInt(fd, unix.F_GETFL, 0) },
			func(fd int) (any, error) { return unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0) }},
		{"rcvtimeo", func(fd int) (any, error) { return GetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO) },
			func(fd int) (any, error) {
				tv, err := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO)
				if tv == nil {
					return unix.Timeval{}, err
				}
				return *tv, err
			}},
		{"poll-now", func(fd int) (any, error) {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := PollNow(p)
			return [2]int{n, int(p[0].Revents)}, err
		}, func(fd int) (any, error) {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(p, 0)
			return [2]int{n, int(p[0].Revents)}, err
		}},
		{"fstatat-proc", func(fd int) (any, error) {
			var st unix.Stat_t
			err := Fstatat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), &st, 0)
			return st.Ino, err
		}, func(fd int) (any, error) {
			var st unix.Stat_t
			err := unix.Fstatat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), &st, 0)
			return st.Ino, err
		}},
	}
	for _, call := range calls {
		for _, bad := range []bool{false, true} {
			name := call.name
			if bad {
				name += "/bad-fd"
			}
			t.Run(name, func(t *testing.T) {
				fd := -1
				if !bad {
					fd = dgramPair(t)
				}
				got, gerr := call.ours(fd)
				want, werr := call.ux(fd)
				if !reflect.DeepEqual(got, want) || gerr != werr {
					t.Fatalf("got (%v, %v), x/sys/unix gives (%v, %v)", got, gerr, want, werr)
				}
			})
		}
	}
}

// A descriptor copied from a process through its pidfd, and memory read
// and written through process_vm_*, as x/sys/unix's calls do.
func TestProcessCalls(t *testing.T) {
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	a, _ := pair(t)
	dup, err := PidfdGetfd(pidfd, a, 0)
	if err != nil {
		t.Fatalf("PidfdGetfd: %v", err)
	}
	var sa, sd unix.Stat_t
	unix.Fstat(a, &sa)
	unix.Fstat(dup, &sd)
	if sa.Ino != sd.Ino {
		t.Fatalf("copy is inode %d, original %d", sd.Ino, sa.Ino)
	}
	if err := Close(dup); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := Close(dup); err != unix.EBADF {
		t.Fatalf("second Close: %v, want EBADF", err)
	}
	if _, err := PidfdGetfd(pidfd, 1<<20, 0); err != unix.EBADF {
		t.Fatalf("PidfdGetfd of no descriptor: %v, want EBADF", err)
	}

	src, dst := []byte("remote bytes"), make([]byte, 12)
	local := []unix.Iovec{{Base: &dst[0]}}
	local[0].SetLen(len(dst))
	remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&src[0])), Len: len(src)}}
	if n, err := ProcessVMReadv(os.Getpid(), local, remote); n != len(src) || err != nil || string(dst) != string(src) {
		t.Fatalf("ProcessVMReadv: %d, %v, %q", n, err, dst)
	}
	copy(dst, "written back")
	if n, err := ProcessVMWritev(os.Getpid(), local, remote); n != len(src) || err != nil || string(src) != "written back" {
		t.Fatalf("ProcessVMWritev: %d, %v, %q", n, err, src)
	}
	remote[0].Base = 0 // unmapped
	if _, err := ProcessVMReadv(os.Getpid(), local, remote); err != unix.EFAULT {
		t.Fatalf("ProcessVMReadv of address 0: %v, want EFAULT", err)
	}
}
