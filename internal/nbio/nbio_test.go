package nbio

import (
	"errors"
	"testing"

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
