package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Whom a client trusts. A control socket is in a directory anyone could
// have made first (/tmp/ustack-UID), and whoever serves it receives what
// the client sends: the requests, and with 'ustack run --stack' the
// program's seccomp listener, with which it answers the program's socket
// calls. So before it sends anything a client checks that the directory,
// the socket file and the process listening on it are its own user's.
//
// Root is trusted by every user: root could impersonate anyone anyway.
// Root itself trusts only root: a stack of another user must not be handed
// a program of root (it would answer root's socket calls), and root reads
// another user's stack by running the command as that user.

// UntrustedError says that a control socket is not the caller's: its
// directory, the socket file or the process serving it belongs to another
// user, or others may write the directory. Nothing was sent to it.
type UntrustedError struct {
	Path   string // the directory or the socket
	Reason string // one line: what is wrong and the fix
}

func (e *UntrustedError) Error() string { return e.Reason }

// trusted reports whether a file or process of uid may serve the caller.
func trusted(uid uint32) bool {
	me := uint32(os.Geteuid())
	return uid == me || uid == 0
}

// notYours explains that path belongs to uid, and what to do about it.
func notYours(what, path string, uid uint32) *UntrustedError {
	if os.Geteuid() == 0 {
		return &UntrustedError{Path: path, Reason: fmt.Sprintf(
			"%s %s belongs to uid %d, not root: root uses only root's stacks (run the command as uid %d, or unset XDG_RUNTIME_DIR)", what, path, uid, uid)}
	}
	return &UntrustedError{Path: path, Reason: fmt.Sprintf(
		"%s %s belongs to uid %d, not you: someone may be impersonating your stacks (remove it, or set XDG_RUNTIME_DIR)", what, path, uid)}
}

// openDir opens the control directory without following a symbolic link
// in its last part and checks it: a directory of the caller's (or root's)
// that no other user may write. Read and search by others are accepted
// (a root-made /run/ustack may be 0755): they cannot add or replace a
// socket. The returned O_PATH fd is what the socket is reached through,
// so the directory checked is the one used even if the path is changed
// meanwhile. A directory that is not there is os.ErrNotExist.
func openDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	var bad *UntrustedError
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		bad = &UntrustedError{Path: dir, Reason: fmt.Sprintf(
			"control directory %s is a symbolic link: someone may be impersonating your stacks (remove it, or set XDG_RUNTIME_DIR)", dir)}
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		bad = &UntrustedError{Path: dir, Reason: fmt.Sprintf(
			"control directory %s is not a directory (remove it, or set XDG_RUNTIME_DIR)", dir)}
	case !trusted(st.Uid):
		bad = notYours("control directory", dir, st.Uid)
	case st.Mode&0o022 != 0:
		bad = &UntrustedError{Path: dir, Reason: fmt.Sprintf(
			"control directory %s may be written by other users (mode %04o): they could replace your stacks' sockets (chmod 700 %s)", dir, st.Mode&0o7777, dir)}
	}
	if bad != nil {
		unix.Close(fd)
		return -1, bad
	}
	return fd, nil
}

// dialChecked connects to the socket at path after checking its directory
// and the socket file, then checks the credentials of the process that
// listens on it. It returns the connection only if all are the caller's;
// nothing has been written to it.
func dialChecked(ctx context.Context, path string) (net.Conn, error) {
	dir, name := filepath.Split(path)
	dir = filepath.Clean(dir)
	dfd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if !trusted(st.Uid) {
		return nil, notYours("control socket", path, st.Uid)
	}
	// Through the checked directory (and free of sun_path's 108 bytes).
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d/%s", dfd, name))
	if err != nil {
		return nil, err
	}
	cred, err := peerCred(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading the credentials of the stack on %s: %w", path, err)
	}
	if !trusted(cred.Uid) {
		conn.Close()
		who := "you: someone may be impersonating your stacks"
		if os.Geteuid() == 0 {
			who = "root: root uses only root's stacks"
		}
		return nil, &UntrustedError{Path: path, Reason: fmt.Sprintf(
			"the stack on %s is served by uid %d (pid %d), not by %s (stop that process, or remove %s)", path, cred.Uid, cred.Pid, who, path)}
	}
	return conn, nil
}

// isNotRunning reports whether a dial error means that nobody serves the
// socket: it, or its directory, is not there, or nobody listens.
func isNotRunning(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)
}
