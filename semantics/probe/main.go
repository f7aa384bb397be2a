// Command probe exercises socket calls the way C programs make them (raw
// system calls, explicit flags) and prints what it observed, one line per
// step. Run once on the kernel's stack and once under `ustack run`, the two
// outputs must be equal: that is the definition of "Linux semantics" the
// tests hold ustack to. Observations are chosen to be deterministic (port
// numbers are printed as "nonzero", not their value).
package main

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var scenarios = map[string]func(){
	"names":            names,
	"connect-nonblock": connectNonblock,
	"refused":          refused,
	"halfclose":        halfClose,
	"sockopts":         sockopts,
	"badargs":          badArgs,
	"dualstack":        dualStack,
}

func main() {
	if len(os.Args) != 2 || scenarios[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: probe SCENARIO")
		os.Exit(2)
	}
	scenarios[os.Args[1]]()
}

// say prints one observation.
func say(step string, v ...any) { fmt.Println(step+":", fmt.Sprint(v...)) }

// errno renders an error as its errno name ("ok" for nil).
func errno(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

func must(err error) {
	if err != nil {
		fmt.Println("fatal:", err)
		os.Exit(1)
	}
}

// addr renders a sockaddr with the port reduced to zero/nonzero.
func addr(sa unix.Sockaddr) string {
	port := func(p int) string {
		if p == 0 {
			return "0"
		}
		return "nonzero"
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return fmt.Sprintf("%d.%d.%d.%d:%s", a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3], port(a.Port))
	case *unix.SockaddrInet6:
		return fmt.Sprintf("[%x]:%s", a.Addr, port(a.Port))
	case nil:
		return "nil"
	}
	return fmt.Sprintf("%T", sa)
}

// listener returns a listening socket on 127.0.0.1 and its port.
func listener(flags int) (int, int) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|flags, 0)
	must(err)
	must(unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	must(unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	must(unix.Listen(fd, 16))
	sa, err := unix.Getsockname(fd)
	must(err)
	return fd, sa.(*unix.SockaddrInet4).Port
}

func loopback(port int) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}
}

func names() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	must(err)
	sa, err := unix.Getsockname(fd)
	say("getsockname before bind", addr(sa), " ", errno(err))
	_, err = unix.Getpeername(fd)
	say("getpeername before connect", errno(err))
	ln, port := listener(0)
	sa, err = unix.Getsockname(ln)
	say("listener name", addr(sa), " ", errno(err))
	say("connect", errno(unix.Connect(fd, loopback(port))))
	sa, err = unix.Getsockname(fd)
	say("client name", addr(sa), " ", errno(err))
	sa, err = unix.Getpeername(fd)
	say("client peer", addr(sa), " ", errno(err))
	nfd, peer, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	say("accept4", addr(peer), " ", errno(err))
	fl, _ := unix.FcntlInt(uintptr(nfd), unix.F_GETFL, 0)
	fdfl, _ := unix.FcntlInt(uintptr(nfd), unix.F_GETFD, 0)
	say("accepted nonblock", fl&unix.O_NONBLOCK != 0, " cloexec ", fdfl&unix.FD_CLOEXEC != 0)
	_, _, err = unix.Accept4(nfd, 0)
	say("accept on a connected socket", errno(err))
	buf := make([]byte, 8)
	_, err = unix.Read(nfd, buf)
	say("read with nothing sent, nonblocking", errno(err))
	unix.Write(fd, []byte("hello"))
	time.Sleep(50 * time.Millisecond)
	n, err := unix.Read(nfd, buf)
	say("read", string(buf[:max(n, 0)]), " ", errno(err))
	unix.SetNonblock(ln, true)
	_, _, err = unix.Accept4(ln, 0)
	say("accept with none pending, nonblocking", errno(err))
}

func connectNonblock() {
	ln, port := listener(0)
	defer unix.Close(ln)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	must(err)
	err = unix.Connect(fd, loopback(port))
	say("connect", errno(err) == "EINPROGRESS" || err == nil)
	ep, err := unix.EpollCreate1(0)
	must(err)
	must(unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLET, Fd: int32(fd)}))
	evs := make([]unix.EpollEvent, 4)
	n, err := unix.EpollWait(ep, evs, 2000)
	say("epoll ET writable", n == 1 && evs[0].Events&unix.EPOLLOUT != 0, " ", errno(err))
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	say("SO_ERROR", v, " ", errno(err))
	// Linux reports the finished connect once, then EISCONN.
	say("connect again", errno(unix.Connect(fd, loopback(port))))
	say("connect a third time", errno(unix.Connect(fd, loopback(port))))
	sa, err := unix.Getpeername(fd)
	say("peer", addr(sa), " ", errno(err))
}

func refused() {
	ln, port := listener(0)
	unix.Close(ln) // nobody listens there now
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	must(err)
	say("blocking connect", errno(unix.Connect(fd, loopback(port))))
	fd2, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	must(err)
	err = unix.Connect(fd2, loopback(port))
	if errno(err) == "EINPROGRESS" {
		pfd := []unix.PollFd{{Fd: int32(fd2), Events: unix.POLLOUT}}
		unix.Poll(pfd, 2000)
		v, _ := unix.GetsockoptInt(fd2, unix.SOL_SOCKET, unix.SO_ERROR)
		err = unix.Errno(v)
		if v == 0 {
			err = nil
		}
	}
	say("nonblocking connect outcome", errno(err))
}

func halfClose() {
	ln, port := listener(0)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	must(err)
	must(unix.Connect(fd, loopback(port)))
	srv, _, err := unix.Accept(ln)
	must(err)
	unix.Write(fd, []byte("req"))
	say("shutdown SHUT_WR", errno(unix.Shutdown(fd, unix.SHUT_WR)))
	buf := make([]byte, 16)
	n, err := unix.Read(srv, buf)
	say("server reads", string(buf[:max(n, 0)]), " ", errno(err))
	n, err = unix.Read(srv, buf)
	say("server reads after FIN", n, " ", errno(err))
	unix.Write(srv, []byte("resp"))
	unix.Close(srv)
	n, err = unix.Read(fd, buf)
	say("client reads reply", string(buf[:max(n, 0)]), " ", errno(err))
	_, err = unix.Write(fd, []byte("more"))
	say("write after SHUT_WR", errno(err))
}

func sockopts() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	must(err)
	for _, o := range []struct {
		name       string
		level, opt int
	}{
		{"SO_REUSEADDR", unix.SOL_SOCKET, unix.SO_REUSEADDR},
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE},
		{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY},
	} {
		v0, err0 := unix.GetsockoptInt(fd, o.level, o.opt)
		errSet := unix.SetsockoptInt(fd, o.level, o.opt, 1)
		v1, err1 := unix.GetsockoptInt(fd, o.level, o.opt)
		say(o.name, v0, " ", errno(err0), " set ", errno(errSet), " then ", v1 != 0, " ", errno(err1))
	}
	for _, o := range []struct {
		name string
		opt  int
	}{{"SO_TYPE", unix.SO_TYPE}, {"SO_DOMAIN", unix.SO_DOMAIN}, {"SO_PROTOCOL", unix.SO_PROTOCOL}, {"SO_ERROR", unix.SO_ERROR}} {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.opt)
		say(o.name, v, " ", errno(err))
	}
	_, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, 9999)
	say("unknown option", errno(err))
	err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30)
	v, err2 := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	say("TCP_KEEPIDLE", errno(err), " ", v, " ", errno(err2))
}

func badArgs() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	must(err)
	// getsockname into an unmapped address.
	l := uint32(16)
	_, _, e := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(fd), 8, uintptr(unsafe.Pointer(&l)))
	say("getsockname bad pointer", errno(errnoOrNil(e)))
	// connect with a too-short address.
	sa := [16]byte{byte(unix.AF_INET)}
	_, _, e = unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), 3)
	say("connect short addrlen", errno(errnoOrNil(e)))
	// connect with an unmapped address.
	_, _, e = unix.Syscall(unix.SYS_CONNECT, uintptr(fd), 8, 16)
	say("connect bad pointer", errno(errnoOrNil(e)))
	// bind twice.
	must(unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	say("bind again", errno(unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})))
	// listen on an unbound-then-bound socket is fine; accept on a non-listening one is not.
	_, _, err = unix.Accept(fd)
	say("accept on a non-listening socket", errno(err))
}

func errnoOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func dualStack() {
	ln, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
	must(err)
	v, err := unix.GetsockoptInt(ln, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
	say("V6ONLY default", v, " ", errno(err))
	must(unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	must(unix.Bind(ln, &unix.SockaddrInet6{}))
	must(unix.Listen(ln, 4))
	sa, _ := unix.Getsockname(ln)
	port := sa.(*unix.SockaddrInet6).Port
	say("listener", addr(sa))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	must(err)
	say("connect over IPv4", errno(unix.Connect(fd, loopback(port))))
	_, peer, err := unix.Accept(ln)
	say("accepted peer", addr(peer), " ", errno(err))
	fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
	must(err)
	say("connect over IPv6", errno(unix.Connect(fd6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}, Port: port})))
	_, peer, err = unix.Accept(ln)
	say("accepted peer", addr(peer), " ", errno(err))
}
