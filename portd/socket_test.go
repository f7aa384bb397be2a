package portd_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"ustack/portd"
)

// TestListenModes: whatever the umask, the directory Listen makes for its
// socket is 0755 and the socket 0666, so that every user can reach it.
func TestListenModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("portd's Listen needs root (it removes stale nftables tables)")
	}
	dir := filepath.Join(t.TempDir(), "run", "ustack-portd")
	old := syscall.Umask(0o077)
	srv, err := portd.Listen(filepath.Join(dir, "portd.sock"), nil, t.Logf)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("socket directory: %v %v, want mode 0755", fi.Mode(), err)
	}
	fi, err := os.Stat(filepath.Join(dir, "portd.sock"))
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o666 {
		t.Errorf("socket: %v %v, want a socket of mode 0666", fi.Mode(), err)
	}
}
