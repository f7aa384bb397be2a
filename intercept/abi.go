package intercept

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/internal/nbio"
)

// The kernel's seccomp user-notification structures (include/uapi/linux/
// seccomp.h). x/sys/unix has the ioctl numbers and flags but not these.

// seccompData is struct seccomp_data.
type seccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

// seccompNotif is struct seccomp_notif.
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

// seccompNotifResp is struct seccomp_notif_resp.
type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// seccompNotifAddfd is struct seccomp_notif_addfd.
type seccompNotifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// seccompNotifSizes is struct seccomp_notif_sizes.
type seccompNotifSizes struct {
	Notif     uint16
	NotifResp uint16
	Data      uint16
}

// notifSizes asks the kernel how large its notification structures are;
// the ioctl numbers encode our sizes, so a kernel that disagrees would
// reject them, and we say so instead of failing obscurely later.
func notifSizes() error {
	var s seccompNotifSizes
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&s))); e != 0 {
		return fmt.Errorf("seccomp(SECCOMP_GET_NOTIF_SIZES): %w", e)
	}
	if int(s.Notif) > int(unsafe.Sizeof(seccompNotif{})) || int(s.NotifResp) > int(unsafe.Sizeof(seccompNotifResp{})) {
		return fmt.Errorf("kernel seccomp notification structures (%d/%d bytes) are larger than this build knows (%d/%d)",
			s.Notif, s.NotifResp, unsafe.Sizeof(seccompNotif{}), unsafe.Sizeof(seccompNotifResp{}))
	}
	return nil
}

// ioctlPtr makes one of the listener's ioctls that do not wait (RECV once
// poll has seen a notification, SEND, ID_VALID) through nbio: they come
// once or more per intercepted call.
func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) error {
	for {
		_, err := nbio.Ioctl(fd, req, p)
		if err != unix.EINTR {
			return err
		}
	}
}

func ioctlVal(fd int, req, val uintptr) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, val); e != 0 {
		return e
	}
	return nil
}
