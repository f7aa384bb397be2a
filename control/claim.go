package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// A Claim holds a name for a socket of another kind than a stack's (a
// switch's): DIR/KIND/NAME.sock, in a directory of its own so that it
// never mixes with the stacks' sockets, under a stack's rules. The
// directories are owner-only, the name is held by a lock that the kernel
// drops when its holder dies (so a SIGKILL frees it), and a socket left by a
// dead holder is removed when the name is claimed again.
type Claim struct {
	// Path is where the holder listens.
	Path string
	lock *nameLock
}

// ClaimSocket takes name for a socket of kind. The caller listens on the
// returned Claim's Path and calls Release when it stops. A name already
// held is a *NameTakenError.
func ClaimSocket(kind, name string) (*Claim, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("%q is not a valid %s name (use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", name, kind)
	}
	dir := filepath.Join(Dir(), kind)
	for _, d := range []string{Dir(), dir} {
		if err := makeDir(d); err != nil {
			return nil, err
		}
	}
	path := socketIn(dir, name)
	lock, err := lockName(dir, name, path)
	if err != nil {
		return nil, err
	}
	// We hold the name's lock, so a socket file here is a dead holder's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.release()
		return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	return &Claim{Path: path, lock: lock}, nil
}

// Release removes the socket and frees the name.
func (c *Claim) Release() error {
	err := os.Remove(c.Path)
	c.lock.release()
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// ClaimedSocketPath is the socket of the holder of name of kind, for a
// client. It refuses a directory on the way that is not the user's own and
// closed to others: in /tmp another user could have made it, and put a
// socket there that would pose as ours.
func ClaimedSocketPath(kind, name string) (string, error) {
	if !ValidName(name) {
		return "", fmt.Errorf("%q is not a valid %s name (use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", name, kind)
	}
	dir := filepath.Join(Dir(), kind)
	for _, d := range []string{Dir(), dir} {
		fi, err := os.Lstat(d)
		if err != nil {
			// Nothing was ever claimed; the caller's dial says so.
			return socketIn(dir, name), nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s is not a directory of yours closed to others (remove it, or set XDG_RUNTIME_DIR)", d)
		}
	}
	return socketIn(dir, name), nil
}
