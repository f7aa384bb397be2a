package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/vxlan"
)

// vtepSet is the lab process's VXLAN end points: one UDP socket per local
// address and port, shared by the tunnels of every VXLAN link on it, as
// Linux's vxlan devices share one. A node's end of a VXLAN link is a frame
// socket like any other; the lab process relays between it and the UDP
// socket.
type vtepSet struct {
	logf  func(string, ...any)
	vteps map[netip.AddrPort]*vxlan.VTEP
}

func newVTEPSet(logf func(string, ...any)) *vtepSet {
	return &vtepSet{logf: logf, vteps: map[netip.AddrPort]*vxlan.VTEP{}}
}

// add starts lk's tunnel, relaying the frames of fd, which it takes over
// (also on error).
func (s *vtepSet) add(lk *Link, fd int) error {
	x := lk.VXLAN
	local := x.Local
	if !local.IsValid() {
		local = netip.IPv6Unspecified()
		if x.Remote.Is4() {
			local = netip.IPv4Unspecified()
		}
	}
	key := netip.AddrPortFrom(local, x.Port)
	v, ok := s.vteps[key]
	if !ok {
		var err error
		if v, err = vxlan.Listen(key, s.logf); err != nil {
			unix.Close(fd)
			return err
		}
		s.vteps[key] = v
	}
	f := os.NewFile(uintptr(fd), "vxlan-link")
	c, err := net.FileConn(f) // a duplicate of fd
	f.Close()
	if err != nil {
		return err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return fmt.Errorf("the link socket is not a unix socket")
	}
	if _, err := v.Add(x.VNI, netip.AddrPortFrom(x.Remote, x.Port), uc); err != nil {
		uc.Close()
		return err
	}
	return nil
}

func (s *vtepSet) close() {
	for _, v := range s.vteps {
		v.Close()
	}
}
