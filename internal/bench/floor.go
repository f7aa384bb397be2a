package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// The relay floor measures what request–response costs through the hops
// that ustack run's design puts on every exchange, with nothing done in
// between: the program's socket is one end of an AF_UNIX socketpair (a real
// descriptor, so that an unmodified program's poll and epoll work), a relay
// process copies between the other end and a TCP socket to the host's
// server, and that is all: no TCP/IP stack, no interception. ustack's
// request–response cannot be faster than this; comparing the two says how
// much of its time is its own work, and comparing this with pasta says
// whether the hops alone already cost more than pasta's whole path.
//
// rr-client-fd is the program: rr-client over descriptor 3, the pair's end
// it inherits. testdata/relay_floor.c is the same relay in C, for the
// floor of the hops without Go's runtime.

// rrClientFD is rr-client over descriptor 3 (a connected stream socket).
func rrClientFD(args []string) error {
	if len(args) != 1 {
		return usageError("usage: rr-client-fd DURATION (the connection is descriptor 3)")
	}
	d, err := time.ParseDuration(args[0])
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	c, err := net.FileConn(os.NewFile(3, "rr-client-fd"))
	if err != nil {
		return fmt.Errorf("descriptor 3: %w", err)
	}
	defer c.Close()
	return rrLoop(c, d)
}

// relayFloor runs rr-client-fd on one end of a socketpair and relays
// between the other end and a TCP connection to HOST:PORT (an rr-server):
// with two goroutines in Go's poller (netpoll, as ustack's relays wait), or
// on one locked thread blocking in epoll_wait (thread, as a C relay would).
func relayFloor(args []string) error {
	const usage = "usage: relay-floor HOST:PORT DURATION netpoll|thread"
	if len(args) != 3 {
		return usageError(usage)
	}
	addr, d, err := twoArgs(args[:2], usage)
	if err != nil {
		return err
	}
	mode := args[2]
	if mode != "netpoll" && mode != "thread" {
		return usageError(fmt.Sprintf("mode %q: want netpoll or thread", mode))
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "theirs")
	host, err := net.Dial("tcp", addr) // TCP_NODELAY, as ustack's host sockets
	if err != nil {
		unix.Close(fds[0])
		theirs.Close()
		return err
	}
	defer host.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "rr-client-fd", d.String())
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	theirs.Close()
	switch mode {
	case "netpoll":
		// os.NewFile puts a non-blocking descriptor in Go's poller.
		if err := unix.SetNonblock(fds[0], true); err != nil {
			return err
		}
		ours := os.NewFile(uintptr(fds[0]), "ours")
		defer ours.Close()
		go copyUntilError(host, ours)
		go copyUntilError(ours, host)
	case "thread":
		hostFile, err := host.(*net.TCPConn).File() // a blocking duplicate
		if err != nil {
			return err
		}
		defer hostFile.Close()
		go epollRelay(fds[0], int(hostFile.Fd()))
	}
	return cmd.Wait()
}

// copyUntilError copies src to dst, each chunk as soon as it is read, by
// read and write as a relay does: io.Copy would splice between the two
// sockets inside the kernel instead.
func copyUntilError(dst, src interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}) {
	b := make([]byte, 64<<10)
	for {
		n, err := src.Read(b)
		if err != nil {
			return
		}
		if _, err := dst.Write(b[:n]); err != nil {
			return
		}
	}
}

// epollRelay copies between two blocking descriptors on a thread of its
// own, waiting for either in epoll_wait, until one ends; it closes a.
func epollRelay(a, b int) {
	runtime.LockOSThread()
	defer unix.Close(a)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return
	}
	defer unix.Close(ep)
	for _, fd := range []int{a, b} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return
		}
	}
	buf := make([]byte, 64<<10)
	events := make([]unix.EpollEvent, 2)
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for _, e := range events[:n] {
			from, to := int(e.Fd), b
			if from == b {
				to = a
			}
			r, err := unix.Read(from, buf)
			if r <= 0 || err != nil {
				return
			}
			if _, err := unix.Write(to, buf[:r]); err != nil {
				return
			}
		}
	}
}
