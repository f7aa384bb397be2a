// Package control is the transport of ustack's control plane: every running
// stack serves HTTP+JSON on an owner-only unix socket DIR/NAME.sock, and
// commands reach it by name. Server takes a name and serves the handlers
// mounted on it; Client is the one client of the socket, with a method for
// each kind of request (JSON, streams, CONNECT, handing over a program).
// The API's types are in package control/api.
package control

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// validName is what a stack may be called: it becomes a file name.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether name may name a stack.
func ValidName(name string) bool { return validName.MatchString(name) }

// Dir is where stacks put their control sockets: $XDG_RUNTIME_DIR/ustack,
// else /run/ustack for root and /tmp/ustack-UID for others.
func Dir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "ustack")
	}
	if os.Getuid() == 0 {
		return "/run/ustack"
	}
	return fmt.Sprintf("/tmp/ustack-%d", os.Getuid())
}

// SocketPath is the control socket of the stack called name.
func SocketPath(name string) string { return socketIn(Dir(), name) }

func lockPath(dir, name string) string { return filepath.Join(dir, name+".lock") }

// makeDir creates dir owner-only, and refuses one that someone else owns:
// in /tmp another user could have made it.
func makeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the control socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() {
		return fmt.Errorf("control socket directory %s is not a directory of yours (remove it, or set XDG_RUNTIME_DIR)", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("control socket directory: %w", err)
		}
	}
	return nil
}

// NameTakenError says that a live stack already holds the name.
type NameTakenError struct {
	Name, Socket string
	PID          int // 0 if unknown
}

func (e *NameTakenError) Error() string {
	who := ""
	if e.PID > 0 {
		who = fmt.Sprintf(" (pid %d)", e.PID)
	}
	return fmt.Sprintf("a stack named %s is already running%s on %s (stop it first, or choose another name)", e.Name, who, e.Socket)
}

// nameLock is held by the live stack of a name for its whole life. A lock
// rather than a probe of the socket, so that two stacks started at once
// cannot both decide the name is free, and so that a stack killed by
// SIGKILL frees its name (the kernel drops the lock with the process).
type nameLock struct {
	f    *os.File
	path string
}

// lockName takes the name's lock, writing our pid into the lock file.
func lockName(dir, name, sock string) (*nameLock, error) {
	path := lockPath(dir, name)
	for attempt := 0; attempt < 20; attempt++ {
		f, held, err := tryLock(path)
		if err != nil {
			return nil, err
		}
		if f == nil {
			// Someone holds it. List holds it for a moment while it checks
			// a stale socket, so look again briefly before giving up.
			if attempt < 5 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			return nil, &NameTakenError{Name: name, Socket: sock, PID: held}
		}
		f.Truncate(0)
		f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
		return &nameLock{f: f, path: path}, nil
	}
	return nil, fmt.Errorf("could not lock %s", path)
}

// tryLock opens and locks path without waiting. It returns the locked file,
// or nil and the pid recorded by the holder when someone else has it. A
// holder that exits removes the file; if that happened between our open and
// flock we would hold a lock on a file no one else sees, so the lock counts
// only if the path still names the file we locked.
func tryLock(path string) (*os.File, int, error) {
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, 0, fmt.Errorf("name lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			b, _ := io.ReadAll(io.LimitReader(f, 32))
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				return nil, pid, nil
			}
			return nil, 0, fmt.Errorf("name lock: locking %s: %w", path, err)
		}
		var fst, pst unix.Stat_t
		if unix.Fstat(int(f.Fd()), &fst) == nil && unix.Stat(path, &pst) == nil && fst.Ino == pst.Ino && fst.Dev == pst.Dev {
			return f, 0, nil
		}
		f.Close()
	}
	return nil, 0, fmt.Errorf("name lock: %s keeps changing", path)
}

// release removes the lock file before closing it, so that whoever opens
// the path next makes a fresh file (see tryLock).
func (l *nameLock) release() {
	os.Remove(l.path)
	l.f.Close()
}
