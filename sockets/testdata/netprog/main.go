// Command netprog is a test program run under 'ustack run' by the sockets
// tests: a Go program (static, CGO_ENABLED=0) using the net package, which
// connects non-blocking with edge-triggered epoll, SO_ERROR, getpeername
// and getsockname, and listens with accept4.
//
//	netprog dial ADDR           read everything; print "local L remote R bytes N sha256 H"
//	netprog serve ADDR N SIZE   accept N connections, send SIZE bytes on each; print "listening A" first
//	netprog sockopt N           N getsockopt(SO_TYPE) on an AF_INET socket; print µs per call
//	netprog connects ADDR N     N connect+close to a listener it runs itself; print per second
//	netprog udp-echo ADDR       UDP to an echo server, unconnected then connected, 1 B to 65507 B; print "udp-echo ok"
//	netprog interrupted-connects ADDR N
//	                            N blocking connects under a 100 µs SIGALRM timer; print "connected N"
//	netprog stream ADDR         connect, print "pid P", then read until killed
//	netprog accepting           listen, print "pid P", then block in accept(2) until killed
//	netprog exit-accepting      block a thread in accept(2), and exit while it waits
//	netprog pending-listeners N N listeners closed, each with 3 connections it never accepted; print "closed N"
//	netprog hold ADDR N         open N connections to ADDR, print "held N"; on a line on stdin close them,
//	                            print "closed"; exit at end of stdin
//	netprog pending              listen, connect to it 3 times without accepting, print "pid P", then wait until killed
//	netprog blocked ADDR N      N threads each blocked in accept, recvfrom and connect (to ADDR) at once;
//	                            print "waiting", then release them; print "blocked ok" when all completed
package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: netprog dial|serve|sockopt|connects ..."))
	}
	switch os.Args[1] {
	case "dial":
		dial(os.Args[2])
	case "serve":
		n, _ := strconv.Atoi(os.Args[3])
		size, _ := strconv.Atoi(os.Args[4])
		serve(os.Args[2], n, size)
	case "sockopt":
		n, _ := strconv.Atoi(os.Args[2])
		sockopt(n)
	case "connects":
		n, _ := strconv.Atoi(os.Args[3])
		connects(os.Args[2], n)
	case "interrupted-connects":
		n, _ := strconv.Atoi(os.Args[3])
		interruptedConnects(os.Args[2], n)
	case "udp-echo":
		udpEcho(os.Args[2])
	case "stream":
		c, err := net.Dial("tcp", os.Args[2])
		if err != nil {
			fail(err)
		}
		fmt.Println("pid", os.Getpid()) // connected: the transfer is under way
		io.Copy(io.Discard, c)
	case "accepting":
		fd, _ := blockingListener()
		fmt.Println("pid", os.Getpid())
		unix.Accept(fd)
	case "exit-accepting":
		fd, _ := blockingListener()
		go unix.Accept(fd)
		waitInSyscall(unix.SYS_ACCEPT4, 1, nil)
		os.Exit(0)
	case "blocked":
		n, _ := strconv.Atoi(os.Args[3])
		blocked(os.Args[2], n)
	case "hold":
		n, _ := strconv.Atoi(os.Args[3])
		hold(os.Args[2], n)
	case "pending":
		_, port := blockingListener()
		for j := 0; j < 3; j++ {
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				fail(fmt.Errorf("socket: %w", err))
			}
			if err := unix.Connect(c, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
				fail(fmt.Errorf("connect %d of fd %d to port %d: %w", j, c, port, err))
			}
		}
		fmt.Println("pid", os.Getpid())
		select {}
	case "pending-listeners":
		n, _ := strconv.Atoi(os.Args[2])
		pendingListeners(n)
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "netprog:", err)
	os.Exit(1)
}

// payload is SIZE deterministic bytes.
func payload(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func dial(addr string) {
	var c net.Conn
	var err error
	// The server may still be starting (both run in one shell).
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err = net.Dial("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		fail(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		fail(err)
	}
	fmt.Printf("local %v remote %v bytes %d sha256 %x\n", c.LocalAddr(), c.RemoteAddr(), n, h.Sum(nil))
	c.Close()
}

func serve(addr string, n, size int) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err)
	}
	fmt.Printf("listening %v\n", l.Addr())
	data := payload(size)
	for i := 0; i < n; i++ {
		c, err := l.Accept()
		if err != nil {
			fail(err)
		}
		fmt.Printf("accepted local %v remote %v\n", c.LocalAddr(), c.RemoteAddr())
		if _, err := c.Write(data); err != nil {
			fail(err)
		}
		c.Close()
	}
	l.Close()
}

func sockopt(n int) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		fail(err)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || v != syscall.SOCK_STREAM {
			fail(fmt.Errorf("getsockopt: %v %v", v, err))
		}
	}
	el := time.Since(start)
	fmt.Printf("getsockopt %d calls %.2f us/call\n", n, float64(el.Microseconds())/float64(n))
}

func connects(addr string, n int) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			fail(err)
		}
		c.Close()
	}
	el := time.Since(start)
	fmt.Printf("connect+close %d in %v: %.0f per second\n", n, el, float64(n)/el.Seconds())
}

// interruptedConnects makes n blocking connects to addr (IPv4) while an
// interval timer sends SIGALRM every 100 µs. Go's handler is SA_RESTART,
// so an interrupted connect is made again by the kernel; each must return
// 0 as on Linux, even when the restart comes after the connection is up.
func interruptedConnects(addr string, n int) {
	ap := netip.MustParseAddrPort(addr)
	sa := &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	alarms := make(chan os.Signal, 1)
	signal.Notify(alarms, syscall.SIGALRM)
	go func() {
		for range alarms {
		}
	}()
	tick := unix.Timeval{Usec: 100}
	if _, err := unix.Setitimer(unix.ItimerReal, unix.Itimerval{Interval: tick, Value: tick}); err != nil {
		fail(fmt.Errorf("setitimer: %w", err))
	}
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			fail(fmt.Errorf("socket: %w", err))
		}
		if err := unix.Connect(fd, sa); err != nil {
			fail(fmt.Errorf("connect %d of fd %d to %s: %w", i, fd, addr, err))
		}
		unix.Close(fd)
	}
	unix.Setitimer(unix.ItimerReal, unix.Itimerval{})
	fmt.Println("connected", n)
}

// udpEcho sends datagrams of several sizes to an echo server and checks
// each reply: first on an unconnected socket (sendto and recvfrom with
// addresses), then on a connected one (write and read).
func udpEcho(addr string) {
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		fail(err)
	}
	sizes := []int{1, 1400, 9000, 65507}
	buf := make([]byte, 70000)
	check := func(what string, size, n int) {
		if n != size || string(buf[:n]) != string(payload(size)) {
			fail(fmt.Errorf("%s: sent %d bytes, got %d back, or different ones", what, size, n))
		}
	}
	pc, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		fail(err)
	}
	for _, size := range sizes {
		if _, err := pc.WriteTo(payload(size), raddr); err != nil {
			fail(fmt.Errorf("WriteTo %d bytes: %w", size, err))
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			fail(fmt.Errorf("ReadFrom after %d bytes: %w", size, err))
		}
		if from.String() != raddr.String() {
			fail(fmt.Errorf("reply from %v, want %v", from, raddr))
		}
		check("unconnected", size, n)
	}
	pc.Close()
	c, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		fail(err)
	}
	for _, size := range sizes {
		if _, err := c.Write(payload(size)); err != nil {
			fail(fmt.Errorf("Write %d bytes: %w", size, err))
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			fail(fmt.Errorf("Read after %d bytes: %w", size, err))
		}
		check("connected", size, n)
	}
	fmt.Println("udp-echo ok")
}

// blockingListener is a listening socket on 127.0.0.1 whose accept(2)
// blocks (Go's net package never blocks in the kernel: it polls).
func blockingListener() (int, int) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		fail(fmt.Errorf("socket: %w", err))
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fail(fmt.Errorf("bind of fd %d: %w", fd, err))
	}
	if err := unix.Listen(fd, 128); err != nil {
		fail(fmt.Errorf("listen on fd %d: %w", fd, err))
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		fail(fmt.Errorf("getsockname of fd %d: %w", fd, err))
	}
	return fd, sa.(*unix.SockaddrInet4).Port
}

// hold keeps n idle connections to addr open until told to close them.
func hold(addr string, n int) {
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fail(fmt.Errorf("connection %d: %w", i, err))
		}
		conns = append(conns, c)
	}
	fmt.Println("held", n)
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')
	for _, c := range conns {
		c.Close()
	}
	fmt.Println("closed")
	io.Copy(io.Discard, in)
}

// pendingListeners closes n listeners, each while connections to it wait
// to be accepted.
func pendingListeners(n int) {
	for i := 0; i < n; i++ {
		ln, port := blockingListener()
		var clients []int
		for j := 0; j < 3; j++ {
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				fail(fmt.Errorf("socket: %w", err))
			}
			if err := unix.Connect(c, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
				fail(fmt.Errorf("listener %d: connect %d of fd %d to port %d: %w", i, j, c, port, err))
			}
			clients = append(clients, c)
		}
		unix.Close(ln)
		for _, c := range clients {
			unix.Close(c)
		}
	}
	fmt.Println("closed", n)
}

// blocked puts n threads in each of accept(2), recvfrom(2) with an address
// and connect(2) to addr, all blocking in the kernel at once, then gives
// each something to complete with: connections to the listener, datagrams
// to the UDP socket, and (from the test, on "waiting") the host accepting.
func blocked(addr string, n int) {
	host, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		fail(err)
	}
	ln, port := blockingListener()
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		fail(err)
	}
	if err := unix.Bind(udp, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fail(err)
	}
	usa, _ := unix.Getsockname(udp)
	var wg sync.WaitGroup
	// The host's listener queues a connection or two before it drops SYNs:
	// those connects complete at once.
	var connected atomic.Int32
	errs := make(chan error, 3*n)
	for i := 0; i < n; i++ {
		wg.Add(3)
		go func() {
			defer wg.Done()
			if _, _, err := unix.Accept(ln); err != nil {
				errs <- fmt.Errorf("accept: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			if _, from, err := unix.Recvfrom(udp, buf, 0); err != nil || from == nil {
				errs <- fmt.Errorf("recvfrom: %v from %v", err, from)
			}
		}()
		go func() {
			defer wg.Done()
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err == nil {
				var a [4]byte
				copy(a[:], host.IP.To4())
				err = unix.Connect(fd, &unix.SockaddrInet4{Addr: a, Port: host.Port})
				connected.Add(1)
			}
			if err != nil {
				errs <- fmt.Errorf("connect: %w", err)
			}
		}()
	}
	waitInSyscall(unix.SYS_ACCEPT4, n, nil)
	waitInSyscall(unix.SYS_RECVFROM, n, nil)
	waitInSyscall(unix.SYS_CONNECT, n, &connected)
	fmt.Println("waiting")
	for i := 0; i < n; i++ {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			fail(err)
		}
		if err := unix.Connect(c, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
			fail(fmt.Errorf("connecting to our own listener: %w", err))
		}
		if err := unix.Sendto(udp, []byte("wake"), 0, usa); err != nil {
			fail(err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		fail(fmt.Errorf("threads still blocked after 60 s"))
	}
	close(errs)
	for err := range errs {
		fail(err)
	}
	fmt.Println("blocked ok")
}

// waitInSyscall waits until n threads of this process are in system call
// nr (/proc/self/task/TID/syscall begins with the number of the call a
// blocked thread is in), less those that counted themselves in returned,
// or fails after a minute.
func waitInSyscall(nr, n int, returned *atomic.Int32) {
	want := strconv.Itoa(nr)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			fail(err)
		}
		in := 0
		if returned != nil {
			in = int(returned.Load())
		}
		for _, task := range tasks {
			b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
			if f := strings.Fields(string(b)); len(f) > 0 && f[0] == want {
				in++
			}
		}
		if in >= n {
			return
		}
		if time.Now().After(deadline) {
			fail(fmt.Errorf("%d threads in (or done with) system call %d after a minute, want %d", in, nr, n))
		}
	}
}
