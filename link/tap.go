package link

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Tap is an open tap device: the stack's own Ethernet port on the host.
type Tap struct {
	Name    string
	fd      int
	created bool // made by OpenTap; it vanishes with the last open fd
	ep      *vnetEndpoint
}

// ErrNoTap is wrapped by OpenTap when the device does not exist and was not
// to be created.
var ErrNoTap = errors.New("device not found")

// OpenTap opens the tap device name. An existing tap owned by the caller
// needs no privilege (ip tuntap add NAME mode tap user $USER). With create,
// a missing device is made (CAP_NET_ADMIN) and brought up; it is removed
// when the Tap is closed.
func OpenTap(name string, create bool) (*Tap, error) {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("%q is not a valid interface name", name)
	}
	_, statErr := os.Stat("/sys/class/net/" + name)
	exists := statErr == nil
	if !exists && !create {
		return nil, fmt.Errorf("%s: %w", name, ErrNoTap)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%s: not allowed to attach (the tap must belong to you: ip tuntap add %s mode tap user $USER): %w", name, name, err)
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%s: not a free tap device (%w)", name, err)
		}
		return nil, fmt.Errorf("%s: TUNSETIFF: %w", name, err)
	}
	t := &Tap{Name: name, fd: fd, created: !exists}
	if err := enableOffloads(fd); err != nil {
		t.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if t.created {
		if err := setUp(name); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// setUp brings an interface up, as `ip link set NAME up` does.
func setUp(name string) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: reading flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: bringing it up: %w", name, err)
	}
	return nil
}

// MTU returns the device's MTU.
func (t *Tap) MTU() (int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(t.Name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, fmt.Errorf("%s: reading MTU: %w", t.Name, err)
	}
	return int(ifr.Uint32()), nil
}

// Endpoint returns the tap's link endpoint: whole Ethernet frames with the
// kernel's segmentation and checksum offloads (wrap it in ethernet.New). It
// takes over the device's fd; Close still releases it. Frames whose
// checksum the kernel has not vouched for are verified by the stack, so a
// corrupt frame is counted and dropped. busyPoll above zero keeps the
// reader polling that long after each frame before it sleeps.
func (t *Tap) Endpoint(mtu int, busyPoll time.Duration) (stack.LinkEndpoint, error) {
	if t.ep != nil {
		return nil, fmt.Errorf("%s: endpoint already made", t.Name)
	}
	ep, err := newVnetEndpoint(t.fd, "/dev/net/tun:"+t.Name, uint32(mtu), RandomMAC(), busyPoll)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name, err)
	}
	t.ep = ep
	return ep, nil
}

// Close releases the device (and removes it if OpenTap created it).
func (t *Tap) Close() error {
	if t.ep != nil {
		t.ep.Close() // closes the fd
		t.fd = -1
		return nil
	}
	if t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	return err
}

// RandomMAC returns a random locally administered unicast MAC address.
func RandomMAC() tcpip.LinkAddress {
	var b [6]byte
	rand.Read(b[:])
	b[0] = b[0]&^0x01 | 0x02
	return tcpip.LinkAddress(b[:])
}
