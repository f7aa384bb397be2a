// Command probe exercises socket calls the way C programs make them (raw
// system calls, explicit flags) and prints what it observed, one line per
// step. Run once on the kernel's stack and once under `ustack run`, the two
// outputs must be equal: that is the definition of "Linux semantics" the
// tests hold ustack to. Observations are chosen to be deterministic (port
// numbers are printed as "nonzero", not their value).
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
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
	"udp":              udpBasics,
	"udp-mmsg":         udpMmsg,
	"udp-blocking":     udpBlocking,
	"udp-badargs":      udpBadArgs,
	"udp-sockopts":     udpSockopts,
	"udp-cmsg":         udpCmsg,
	"tcpinfo":          tcpInfo,
	"linger":           linger,
	"ping":             ping,
	"unreachable":      unreachable,
	"timeout":          timeout,
	"backlog":          backlog,
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

// udpPair returns two UDP sockets of domain bound to the loopback address,
// and the second one's address.
func udpPair(domain int) (int, int, unix.Sockaddr) {
	var any unix.Sockaddr = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if domain == unix.AF_INET6 {
		any = &unix.SockaddrInet6{Addr: [16]byte{15: 1}}
	}
	a, err := unix.Socket(domain, unix.SOCK_DGRAM, 0)
	must(err)
	b, err := unix.Socket(domain, unix.SOCK_DGRAM, 0)
	must(err)
	must(unix.Bind(a, any))
	must(unix.Bind(b, any))
	sb, err := unix.Getsockname(b)
	must(err)
	return a, b, sb
}

// udp covers the address-carrying calls, the native data path of a
// connected socket, and what the kernel says about sizes and peeking.
func udpBasics() {
	for _, domain := range []int{unix.AF_INET, unix.AF_INET6} {
		say("domain", map[int]string{unix.AF_INET: "inet", unix.AF_INET6: "inet6"}[domain])
		a, b, sb := udpPair(domain)
		typ, _ := unix.GetsockoptInt(a, unix.SOL_SOCKET, unix.SO_TYPE)
		proto, _ := unix.GetsockoptInt(a, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		say("SO_TYPE SO_PROTOCOL", typ, " ", proto)
		_, err := unix.Getpeername(a)
		say("getpeername unconnected", errno(err))
		sa, _ := unix.Getsockname(a)
		say("getsockname bound", addr(sa))
		_, err = unix.GetsockoptInt(a, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		say("TCP_NODELAY on UDP", errno(err))

		// sendto / recvfrom with addresses, and an empty datagram.
		say("sendto", errno(unix.Sendto(a, []byte("hello"), 0, sb)))
		say("sendto empty", errno(unix.Sendto(a, nil, 0, sb)))
		buf := make([]byte, 100)
		n, from, err := unix.Recvfrom(b, buf, 0)
		say("recvfrom", n, " ", string(buf[:n]), " ", errno(err), " from ", addr(from))
		n, from, err = unix.Recvfrom(b, buf, 0)
		say("recvfrom empty", n, " ", errno(err), " from ", addr(from))

		// MSG_PEEK leaves the datagram; MSG_TRUNC reports its real size.
		must(unix.Sendto(a, []byte("0123456789"), 0, sb))
		n, _, err = unix.Recvfrom(b, buf[:4], unix.MSG_PEEK)
		say("peek 4", n, " ", string(buf[:n]), " ", errno(err))
		var nread int
		nread, err = unix.IoctlGetInt(b, unix.SIOCINQ)
		say("FIONREAD", nread, " ", errno(err))
		n, from, err = unix.Recvfrom(b, buf[:4], unix.MSG_TRUNC)
		say("recvfrom 4 with MSG_TRUNC", n, " ", string(buf[:4]), " ", errno(err), " from ", addr(from))
		n, _, err = unix.Recvfrom(b, buf, unix.MSG_DONTWAIT)
		say("recvfrom nothing queued", n, " ", errno(err))

		// sendmsg / recvmsg with two iovecs, and a truncated recvmsg.
		_, err = unix.SendmsgN(a, []byte("msg-one"), nil, sb, 0)
		say("sendmsg", errno(err))
		n, oobn, rflags, from, err := unix.Recvmsg(b, buf, nil, 0)
		say("recvmsg", n, " ", string(buf[:n]), " oob ", oobn, " flags ", rflags, " ", errno(err), " from ", addr(from))
		must(unix.Sendto(a, []byte("truncated!"), 0, sb))
		n, _, rflags, _, err = unix.Recvmsg(b, buf[:3], nil, 0)
		say("recvmsg 3", n, " ", string(buf[:n]), " MSG_TRUNC ", rflags&unix.MSG_TRUNC != 0, " ", errno(err))

		// The largest datagram, and one past it.
		max := 65507
		if domain == unix.AF_INET6 {
			max = 65527
		}
		big := make([]byte, max+1)
		for i := range big {
			big[i] = byte(i * 7)
		}
		say("sendto too big", errno(unix.Sendto(a, big, 0, sb)))
		say("sendto largest", errno(unix.Sendto(a, big[:max], 0, sb)))
		got := make([]byte, 70000)
		n, _, err = unix.Recvfrom(b, got, 0)
		say("recvfrom largest", n, " ", errno(err), " intact ", string(got[:n]) == string(big[:max]))

		// Connected: write and read natively; a stranger's datagrams are
		// not delivered; AF_UNSPEC dissolves the association.
		sa2, _ := unix.Getsockname(a)
		must(unix.Connect(b, sa2))
		_, err = unix.Write(b, []byte("via write"))
		say("write connected", errno(err))
		n, err = unix.Read(a, buf)
		say("read", n, " ", string(buf[:n]), " ", errno(err))
		pa, err := unix.Getpeername(b)
		say("getpeername connected", addr(pa), " ", errno(err))
		c, err := unix.Socket(domain, unix.SOCK_DGRAM, 0)
		must(err)
		must(unix.Sendto(c, []byte("stranger"), 0, sb))
		must(unix.Sendto(a, []byte("friend"), 0, sb))
		n, err = unix.Read(b, buf)
		say("connected reads only its peer", string(buf[:n]), " ", errno(err))
		unspec := [16]byte{} // AF_UNSPEC
		_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(b), uintptr(unsafe.Pointer(&unspec[0])), 16)
		say("connect AF_UNSPEC", errno(errnoOrNil(e)))
		_, err = unix.Getpeername(b)
		say("getpeername after AF_UNSPEC", errno(err))
		_, err = unix.Write(b, []byte("nowhere"))
		say("write unconnected", "done")
		for _, fd := range []int{a, b, c} {
			unix.Close(fd)
		}
	}
}

// udpMmsg sends three datagrams with one sendmmsg and takes them with one
// recvmmsg.
func udpMmsg() {
	a, b, sb := udpPair(unix.AF_INET)
	rsa := sb.(*unix.SockaddrInet4)
	var name unix.RawSockaddrInet4
	name.Family = unix.AF_INET
	name.Port = uint16(rsa.Port>>8 | rsa.Port<<8&0xff00)
	name.Addr = rsa.Addr
	type mmsghdr struct {
		hdr unix.Msghdr
		n   uint32
		_   [4]byte
	}
	payloads := [][]byte{[]byte("one"), []byte("two-two"), []byte("three-three-three")}
	var out [3]mmsghdr
	iovs := make([]unix.Iovec, 3)
	for i, p := range payloads {
		iovs[i].Base = &p[0]
		iovs[i].SetLen(len(p))
		out[i].hdr.Name = (*byte)(unsafe.Pointer(&name))
		out[i].hdr.Namelen = unix.SizeofSockaddrInet4
		out[i].hdr.Iov = &iovs[i]
		out[i].hdr.Iovlen = 1
	}
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(a), uintptr(unsafe.Pointer(&out[0])), 3, 0, 0, 0)
	say("sendmmsg", r, " ", errno(errnoOrNil(e)), " lens ", out[0].n, " ", out[1].n, " ", out[2].n)

	var in [4]mmsghdr
	bufs := make([][]byte, 4)
	names := make([]unix.RawSockaddrInet4, 4)
	riovs := make([]unix.Iovec, 4)
	for i := range in {
		bufs[i] = make([]byte, 8)
		riovs[i].Base = &bufs[i][0]
		riovs[i].SetLen(8)
		in[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		in[i].hdr.Namelen = unix.SizeofSockaddrInet4
		in[i].hdr.Iov = &riovs[i]
		in[i].hdr.Iovlen = 1
	}
	time.Sleep(50 * time.Millisecond) // let all three arrive
	r, _, e = unix.Syscall6(unix.SYS_RECVMMSG, uintptr(b), uintptr(unsafe.Pointer(&in[0])), 4, unix.MSG_DONTWAIT, 0, 0)
	say("recvmmsg", r, " ", errno(errnoOrNil(e)))
	for i := 0; i < int(r); i++ {
		say(fmt.Sprint("  msg ", i), in[i].n, " ", string(bufs[i][:min(int(in[i].n), 8)]), " trunc ", in[i].hdr.Flags&unix.MSG_TRUNC != 0,
			" from family ", names[i].Family, " port-nonzero ", names[i].Port != 0)
	}
	// A blocking recvmmsg with MSG_WAITFORONE returns what one arrival brings.
	must(unix.Sendto(a, []byte("late"), 0, sb))
	r, _, e = unix.Syscall6(unix.SYS_RECVMMSG, uintptr(b), uintptr(unsafe.Pointer(&in[0])), 4, unix.MSG_WAITFORONE, 0, 0)
	say("recvmmsg WAITFORONE", r, " ", errno(errnoOrNil(e)), " ", string(bufs[0][:in[0].n]))
}

// udpBlocking: a blocking recvfrom waits for a datagram sent later, and
// SO_RCVTIMEO bounds the wait.
func udpBlocking() {
	a, b, sb := udpPair(unix.AF_INET)
	go func() {
		time.Sleep(200 * time.Millisecond)
		unix.Sendto(a, []byte("later"), 0, sb)
	}()
	buf := make([]byte, 16)
	start := time.Now()
	n, from, err := unix.Recvfrom(b, buf, 0)
	say("blocking recvfrom", string(buf[:n]), " ", errno(err), " ", addr(from), " waited ", time.Since(start) >= 150*time.Millisecond)
	must(unix.SetsockoptTimeval(b, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 300000}))
	start = time.Now()
	_, _, err = unix.Recvfrom(b, buf, 0)
	el := time.Since(start)
	say("recvfrom with SO_RCVTIMEO", errno(err), " timed out in time ", el >= 250*time.Millisecond && el < 3*time.Second)
	n, err = unix.Read(b, buf[:0])
	_ = n
	unix.SetNonblock(b, true)
	_, err = unix.Read(b, buf)
	say("non-blocking read", errno(err))
}

// udpBadArgs: bad pointers and lengths on the address-carrying calls.
func udpBadArgs() {
	a, b, sb := udpPair(unix.AF_INET)
	msg := []byte("x")
	sa := [16]byte{byte(unix.AF_INET)}
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(a), uintptr(unsafe.Pointer(&msg[0])), 1, 0, 8, 16)
	say("sendto bad address pointer", errno(errnoOrNil(e)))
	_, _, e = unix.Syscall6(unix.SYS_SENDTO, uintptr(a), uintptr(unsafe.Pointer(&msg[0])), 1, 0, uintptr(unsafe.Pointer(&sa[0])), 3)
	say("sendto short address", errno(errnoOrNil(e)))
	_, _, e = unix.Syscall6(unix.SYS_SENDTO, uintptr(a), uintptr(unsafe.Pointer(&msg[0])), 1, 0, uintptr(unsafe.Pointer(&sa[0])), 16)
	say("sendto port 0", errno(errnoOrNil(e)))
	sbRaw := sb.(*unix.SockaddrInet4)
	good := [16]byte{byte(unix.AF_INET), 0, byte(sbRaw.Port >> 8), byte(sbRaw.Port), 127, 0, 0, 1}
	_, _, e = unix.Syscall6(unix.SYS_SENDTO, uintptr(a), 8, 1, 0, uintptr(unsafe.Pointer(&good[0])), 16)
	say("sendto bad buffer", errno(errnoOrNil(e)))
	var hdr unix.Msghdr
	iov := unix.Iovec{Base: &msg[0]}
	iov.SetLen(1)
	hdr.Iov = &iov
	hdr.Iovlen = 2000
	_, _, e = unix.Syscall(unix.SYS_SENDMSG, uintptr(a), uintptr(unsafe.Pointer(&hdr)), 0)
	say("sendmsg too many iovecs", errno(errnoOrNil(e)))
	_, _, e = unix.Syscall(unix.SYS_SENDMSG, uintptr(a), 8, 0)
	say("sendmsg bad msghdr", errno(errnoOrNil(e)))
	must(unix.Sendto(a, []byte("data"), 0, sb))
	time.Sleep(50 * time.Millisecond)
	var from [16]byte
	fromLen := uint32(16)
	_, _, e = unix.Syscall6(unix.SYS_RECVFROM, uintptr(b), 8, 4, 0, uintptr(unsafe.Pointer(&from[0])), uintptr(unsafe.Pointer(&fromLen)))
	say("recvfrom bad buffer", errno(errnoOrNil(e)))
	fromLen = 4
	buf := make([]byte, 8)
	must(unix.Sendto(a, []byte("data"), 0, sb))
	r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(b), uintptr(unsafe.Pointer(&buf[0])), 8, 0, uintptr(unsafe.Pointer(&from[0])), uintptr(unsafe.Pointer(&fromLen)))
	say("recvfrom short address buffer", r, " ", errno(errnoOrNil(e)), " addrlen ", fromLen, " family ", from[0])
	_, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_TCP)
	say("socket DGRAM with IPPROTO_TCP", errno(err))
}

// ping sends an ICMP echo through an unprivileged ping socket.
func ping() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	if err != nil {
		say("ping socket", errno(err))
		return
	}
	proto, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	say("SO_PROTOCOL", proto)
	echo := []byte{8, 0, 0, 0, 0, 0, 0, 1, 'p', 'i', 'n', 'g'}
	err = unix.Sendto(fd, echo, 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	say("sendto echo", errno(err))
	must(unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}))
	buf := make([]byte, 64)
	n, from, err := unix.Recvfrom(fd, buf, 0)
	say("reply", n, " type ", buf[0], " seq ", buf[7], " payload ", string(buf[8:n]), " ", errno(err), " from ", addr(from))
}

// udpSockopts: options of UDP sockets, set and read back.
func udpSockopts() {
	for _, domain := range []int{unix.AF_INET, unix.AF_INET6} {
		fd, err := unix.Socket(domain, unix.SOCK_DGRAM, 0)
		must(err)
		say("set TCP_NODELAY", errno(unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)))
		_, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		say("get TCP_NODELAY", errno(err))
		for _, o := range []struct {
			name       string
			level, opt int
			set        int
			v6Only     bool
		}{
			{"SO_BROADCAST", unix.SOL_SOCKET, unix.SO_BROADCAST, 1, false},
			{"SO_REUSEADDR", unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, false},
			{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, false},
			{"IP_TTL", unix.IPPROTO_IP, unix.IP_TTL, 17, false},
			{"IP_RECVERR", unix.IPPROTO_IP, unix.IP_RECVERR, 1, false},
			{"IP_PKTINFO", unix.IPPROTO_IP, unix.IP_PKTINFO, 1, false},
			{"IP_MULTICAST_TTL", unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 3, false},
			{"IP_MULTICAST_LOOP", unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0, false},
			{"IPV6_UNICAST_HOPS", unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 9, true},
			{"IPV6_RECVPKTINFO", unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1, true},
		} {
			if o.v6Only && domain != unix.AF_INET6 {
				continue
			}
			before, err1 := unix.GetsockoptInt(fd, o.level, o.opt)
			err2 := unix.SetsockoptInt(fd, o.level, o.opt, o.set)
			after, err3 := unix.GetsockoptInt(fd, o.level, o.opt)
			say(o.name, before, " ", errno(err1), " -> ", errno(err2), " ", after, " ", errno(err3))
		}
		unix.Close(fd)
	}
}

// connected returns both ends of a TCP connection over 127.0.0.1.
func connected() (client, server int) {
	ln, port := listener(0)
	client, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	must(err)
	must(unix.Connect(client, loopback(port)))
	server, _, err = unix.Accept(ln)
	must(err)
	unix.Close(ln)
	return client, server
}

// tcpInfo: TCP_INFO reports the connection from its control block, and
// TCP_CONGESTION is per socket.
func tcpInfo() {
	client, server := connected()
	_, err := unix.Write(client, make([]byte, 1000))
	must(err)
	buf := make([]byte, 1000)
	_, err = unix.Read(server, buf)
	must(err)
	time.Sleep(50 * time.Millisecond) // let the ACK in
	ti, err := unix.GetsockoptTCPInfo(client, unix.IPPROTO_TCP, unix.TCP_INFO)
	say("TCP_INFO", errno(err))
	say("  state established", ti.State == 1)
	say("  ca_state open", ti.Ca_state == 0)
	say("  rtt set", ti.Rtt > 0, " rto at least 200 ms ", ti.Rto >= 200000)
	say("  mss set", ti.Snd_mss > 0, " cwnd set ", ti.Snd_cwnd > 0)
	say("  segments counted", ti.Segs_out >= 2 && ti.Segs_in >= 2)
	say("  bytes_received", ti.Bytes_received)
	say("  bytes_acked", ti.Bytes_acked, " unacked ", ti.Unacked, " lost ", ti.Lost, " sacked ", ti.Sacked)
	// 300 bytes the server has not read yet count as received.
	_, err = unix.Write(client, make([]byte, 300))
	must(err)
	time.Sleep(50 * time.Millisecond)
	si, err := unix.GetsockoptTCPInfo(server, unix.IPPROTO_TCP, unix.TCP_INFO)
	say("server TCP_INFO", errno(err), " bytes_received ", si.Bytes_received)
	// A short buffer gets a prefix of the structure, as on Linux.
	b := make([]byte, 8)
	l := uint32(8)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(client), unix.IPPROTO_TCP, unix.TCP_INFO, uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
	say("TCP_INFO into 8 bytes", errno(errnoOrNil(e)), " len ", l, " state ", b[0])
	// The default is the stack's own (the host's sysctl, or --cc).
	cc, err := unix.GetsockoptString(client, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	say("TCP_CONGESTION has a default", cc != "", " ", errno(err))
	def := cc
	say("set reno", errno(unix.SetsockoptString(client, unix.IPPROTO_TCP, unix.TCP_CONGESTION, "reno")))
	cc, err = unix.GetsockoptString(client, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	say("TCP_CONGESTION now", cc, " ", errno(err))
	cc, _ = unix.GetsockoptString(server, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	say("the other socket keeps the default", cc == def)
	say("set nosuch", errno(unix.SetsockoptString(client, unix.IPPROTO_TCP, unix.TCP_CONGESTION, "nosuch")))
}

// linger: SO_LINGER with a zero timeout makes close send a reset, which
// the peer's next read reports as ECONNRESET; after an orderly close the
// peer reads end of file, and writing on gets EPIPE.
func linger() {
	client, server := connected()
	must(unix.SetsockoptLinger(client, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}))
	l, err := unix.GetsockoptLinger(client, unix.SOL_SOCKET, unix.SO_LINGER)
	say("SO_LINGER", l.Onoff, " ", l.Linger, " ", errno(err))
	unix.Close(client)
	time.Sleep(200 * time.Millisecond)
	buf := make([]byte, 16)
	n, err := unix.Read(server, buf)
	say("read after the peer's reset", n, " ", errno(err))
	n, err = unix.Read(server, buf)
	say("read again", n, " ", errno(err))

	client, server = connected()
	unix.Close(client)
	time.Sleep(200 * time.Millisecond)
	n, err = unix.Read(server, buf)
	say("read after an orderly close", n, " ", errno(err))
	_, err = unix.SendmsgN(server, []byte("x"), nil, nil, unix.MSG_NOSIGNAL)
	time.Sleep(200 * time.Millisecond)
	_, err = unix.SendmsgN(server, []byte("x"), nil, nil, unix.MSG_NOSIGNAL)
	say("writing on to a closed peer", errno(err))
}

// unreachable connects (blocking) to addresses without a route; it runs in a
// network namespace with only loopback, 198.51.100.0/24 routed "unreachable".
func unreachable() {
	for _, c := range []struct {
		name   string
		domain int
		sa     unix.Sockaddr
	}{
		{"no route, ipv4", unix.AF_INET, &unix.SockaddrInet4{Port: 80, Addr: [4]byte{192, 0, 2, 1}}},
		{"unreachable route, ipv4", unix.AF_INET, &unix.SockaddrInet4{Port: 80, Addr: [4]byte{198, 51, 100, 1}}},
		{"no route, ipv6", unix.AF_INET6, &unix.SockaddrInet6{Port: 80, Addr: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}}},
	} {
		fd, err := unix.Socket(c.domain, unix.SOCK_STREAM, 0)
		must(err)
		say(c.name+": connect", errno(unix.Connect(fd, c.sa)))
		_, err = unix.Getpeername(fd)
		say(c.name+": getpeername", errno(err))
		unix.Close(fd)
	}
}

// timeout connects to an address whose packets vanish (a dummy device in
// the namespace this runs in), with TCP_SYNCNT 1 so the connect gives up
// after the first SYN and one retransmission, about 3 s. A blocking and a
// non-blocking connect run side by side.
func timeout() {
	dst := &unix.SockaddrInet4{Port: 80, Addr: [4]byte{203, 0, 113, 2}}
	open := func(flags int) int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|flags, 0)
		must(err)
		say("TCP_SYNCNT 0", errno(unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 0)))
		must(unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1))
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT)
		say("TCP_SYNCNT", v, " ", errno(err))
		return fd
	}
	nb := open(unix.SOCK_NONBLOCK)
	say("non-blocking connect", errno(unix.Connect(nb, dst)))
	b := open(0)
	start := time.Now()
	err := unix.Connect(b, dst)
	took := time.Since(start)
	say("blocking connect", errno(err), " in 2 to 5 s: ", took > 2*time.Second && took < 5*time.Second)
	pfd := []unix.PollFd{{Fd: int32(nb), Events: unix.POLLOUT}}
	n, _ := unix.Poll(pfd, 3000)
	// Linux adds POLLERR and POLLHUP here; under ustack the fd only turns
	// writable (a known difference: programs learn the outcome from
	// SO_ERROR either way).
	say("non-blocking poll", n, " POLLOUT ", pfd[0].Revents&unix.POLLOUT != 0)
	v, err := unix.GetsockoptInt(nb, unix.SOL_SOCKET, unix.SO_ERROR)
	say("SO_ERROR", unix.ErrnoName(unix.Errno(v)), " ", errno(err))
}

// backlog: a listener with backlog 1 holds two finished connections (Linux
// queues backlog+1); further SYNs go unanswered until accept makes room,
// and then the clients' SYN retransmissions get in.
func backlog() {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	must(err)
	must(unix.Bind(ln, loopback(0)))
	must(unix.Listen(ln, 1))
	sa, err := unix.Getsockname(ln)
	must(err)
	port := sa.(*unix.SockaddrInet4).Port
	const clients = 4
	fds := make([]int, clients)
	for i := range fds {
		fds[i], err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
		must(err)
		err = unix.Connect(fds[i], loopback(port))
		say(fmt.Sprint("connect ", i), errno(err) == "EINPROGRESS" || err == nil)
		time.Sleep(50 * time.Millisecond)
	}
	established := func() int {
		n := 0
		for _, fd := range fds {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if m, _ := unix.Poll(pfd, 0); m == 1 && pfd[0].Revents&unix.POLLOUT != 0 {
				n++
			}
		}
		return n
	}
	acceptAll := func() int {
		n := 0
		for {
			fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
			if err != nil {
				return n
			}
			unix.Close(fd)
			n++
		}
	}
	time.Sleep(300 * time.Millisecond)
	say("connected before accept", established())
	say("accepted", acceptAll())
	// The dropped SYNs are sent again after about 1 s.
	time.Sleep(1500 * time.Millisecond)
	say("connected after accept", established())
	say("accepted later", acceptAll())
}

// udpCmsg: the control messages of IP_PKTINFO, IP_RECVTTL, IP_RECVTOS,
// IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT and IPV6_RECVTCLASS on a
// wildcard-bound socket, over IPv4, IPv6 and IPv4 to a dual-stack socket,
// and how a control buffer that is too small is cut.
func udpCmsg() {
	recv := func(fd, oobLen int) {
		buf := make([]byte, 100)
		var oob []byte
		if oobLen > 0 {
			oob = make([]byte, oobLen)
		}
		n, oobn, flags, _, err := unix.Recvmsg(fd, buf, oob, 0)
		say("  recvmsg", n, " ", errno(err), " oobn ", oobn, " MSG_CTRUNC ", flags&unix.MSG_CTRUNC != 0)
		for len(oob[:oobn]) >= unix.SizeofCmsghdr {
			h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			data := oob[unix.SizeofCmsghdr:min(int(h.Len), oobn)]
			desc := fmt.Sprintf("level %d type %d len %d", h.Level, h.Type, h.Len)
			switch {
			case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
				pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
				desc += fmt.Sprintf(" IP_PKTINFO ifindex nonzero %v spec_dst %v addr %v", pi.Ifindex != 0, netip.AddrFrom4(pi.Spec_dst), netip.AddrFrom4(pi.Addr))
			case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
				pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
				desc += fmt.Sprintf(" IPV6_PKTINFO ifindex nonzero %v addr %v", pi.Ifindex != 0, netip.AddrFrom16(pi.Addr))
			case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_TOS && len(data) >= 1:
				desc += fmt.Sprintf(" IP_TOS %d", data[0])
			case h.Type != unix.IP_PKTINFO && h.Type != unix.IPV6_PKTINFO && len(data) >= 4:
				// An int; ifindex values are the stack's own.
				desc += fmt.Sprintf(" value %d", int32(binary.NativeEndian.Uint32(data)))
			}
			say("  cmsg", desc)
			step := unix.CmsgSpace(int(h.Len) - unix.SizeofCmsghdr)
			if step > oobn || h.Len < unix.SizeofCmsghdr {
				break
			}
			oob, oobn = oob[step:], oobn-step
		}
	}
	send := func(domain int, to unix.Sockaddr) {
		fd, err := unix.Socket(domain, unix.SOCK_DGRAM, 0)
		must(err)
		must(unix.Sendto(fd, []byte("x"), 0, to))
		unix.Close(fd)
	}

	say("inet, bound to 0.0.0.0")
	r, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	must(err)
	must(unix.Bind(r, &unix.SockaddrInet4{}))
	sa, _ := unix.Getsockname(r)
	port := sa.(*unix.SockaddrInet4).Port
	send(unix.AF_INET, loopback(port))
	say(" without IP_PKTINFO")
	recv(r, 64)
	must(unix.SetsockoptInt(r, unix.IPPROTO_IP, unix.IP_PKTINFO, 1))
	for _, room := range []int{64, unix.CmsgLen(0) + 4, 8, 0} {
		send(unix.AF_INET, loopback(port))
		say(" IP_PKTINFO, control buffer ", room)
		recv(r, room)
	}
	must(unix.SetsockoptInt(r, unix.IPPROTO_IP, unix.IP_RECVTTL, 1))
	must(unix.SetsockoptInt(r, unix.IPPROTO_IP, unix.IP_RECVTOS, 1))
	send(unix.AF_INET, loopback(port))
	say(" IP_PKTINFO, IP_RECVTTL, IP_RECVTOS")
	recv(r, 128)
	send(unix.AF_INET, loopback(port))
	say(" the same, control buffer ", unix.CmsgSpace(12)+unix.CmsgLen(4))
	recv(r, unix.CmsgSpace(12)+unix.CmsgLen(4))
	unix.Close(r)

	say("inet6, bound to [::], dual-stack")
	r, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
	must(err)
	must(unix.Bind(r, &unix.SockaddrInet6{}))
	sa, _ = unix.Getsockname(r)
	port = sa.(*unix.SockaddrInet6).Port
	fromBoth := func(what string) {
		send(unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}, Port: port})
		say(" " + what + ", from ::1")
		recv(r, 256)
		send(unix.AF_INET, loopback(port))
		say(" " + what + ", from 127.0.0.1")
		recv(r, 256)
	}
	must(unix.SetsockoptInt(r, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1))
	fromBoth("IPV6_RECVPKTINFO")
	must(unix.SetsockoptInt(r, unix.IPPROTO_IP, unix.IP_PKTINFO, 1))
	fromBoth("IPV6_RECVPKTINFO and IP_PKTINFO")
	for _, o := range []int{unix.IPV6_RECVHOPLIMIT, unix.IPV6_RECVTCLASS} {
		must(unix.SetsockoptInt(r, unix.IPPROTO_IPV6, o, 1))
	}
	must(unix.SetsockoptInt(r, unix.IPPROTO_IP, unix.IP_RECVTTL, 1))
	fromBoth("all of them")
	unix.Close(r)
}
