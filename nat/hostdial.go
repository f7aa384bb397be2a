package nat

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// dialHost connects a TCP socket to target on the host, as net.Dialer does
// (the connection gets the same TCP_NODELAY and keep-alive), except that a
// connect already complete when connect(2) returns is not handed to Go's
// netpoller. One to the host's loopback is: the kernel runs the whole
// handshake inside the call. net.Dialer still parked the goroutine until
// the netpoller reported the socket writable, and that park and wake-up
// took about 100 µs of every guest connect on a 2-CPU machine. A connect
// still in progress waits in the netpoller, until ctx ends.
//
// The connection is the socket's *os.File, in Go's poller, rather than a
// net.Conn: net.FileConn would duplicate the descriptor and look the socket
// up again, ten system calls more per connection.
func dialHost(ctx context.Context, target netip.AddrPort) (*os.File, error) {
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(target.Port()), Addr: target.Addr().As16()}
	if target.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial %s: socket: %w", target, err)
	}
	f := os.NewFile(uintptr(fd), "tcp "+target.String())
	err = unix.Connect(fd, sa)
	if err == unix.EINPROGRESS {
		if !connectEnded(fd) {
			if err := waitConnect(ctx, f); err != nil {
				f.Close()
				return nil, fmt.Errorf("dial %s: %w", target, err)
			}
		}
		err = connectError(fd)
	}
	if err == nil {
		err = setDialerOptions(fd)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dial %s: connect: %w", target, err)
	}
	return f, nil
}

// setDialerOptions gives a connected socket what net.Dialer gives its
// connections: TCP_NODELAY, and keep-alive probes after 15 s idle, every
// 15 s, 9 of them (Go's defaults), so that a host peer gone without a word
// is noticed.
func setDialerOptions(fd int) error {
	for _, o := range []struct{ level, opt, value int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.value); err != nil {
			return err
		}
	}
	return nil
}

// connectEnded reports whether a non-blocking connect on fd has ended, in
// success or failure, without waiting.
func connectEnded(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(pfd, 0)
	return err == nil && n == 1 && pfd[0].Revents != 0
}

// connectError is the outcome of an ended non-blocking connect (SO_ERROR).
func connectError(fd int) error {
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

// waitConnect waits in the netpoller for f's connect to end, or for ctx
// to end (its error is then the result).
func waitConnect(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	// The wait ends when ctx does (its deadline included), so that the
	// error is ctx's.
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Write(func(fd uintptr) bool { return connectEnded(int(fd)) })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
