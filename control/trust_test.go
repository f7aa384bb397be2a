package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// listenCounting listens on path and counts the connections it accepts.
func listenCounting(t *testing.T, path string) *atomic.Int32 {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return &n
}

// TestClientChecksDirectoryAndSocket: a client refuses, without
// connecting, a control directory that is a symbolic link, that others
// may write or that another user owns, and a socket another user owns;
// List refuses such a directory and removes nothing from it.
func TestClientChecksDirectoryAndSocket(t *testing.T) {
	const other = 65534
	for _, tc := range []struct {
		name   string
		root   bool // needs root (chown)
		socket bool // the socket is wrong, not its directory
		set    func(t *testing.T, dir, sock string) string
		reason string
	}{
		{"symbolic link", false, false, func(t *testing.T, dir, sock string) string {
			link := filepath.Join(t.TempDir(), "ustack")
			if err := os.Symlink(dir, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is a symbolic link"},
		{"writable by others", false, false, func(t *testing.T, dir, sock string) string {
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "may be written by other users (mode 0777)"},
		{"sticky and writable by the group", false, false, func(t *testing.T, dir, sock string) string {
			if err := os.Chmod(dir, os.ModeSticky|0o770); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "may be written by other users (mode 1770)"},
		{"directory of another user", true, false, func(t *testing.T, dir, sock string) string {
			if err := os.Chown(dir, other, other); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "control directory DIR belongs to uid 65534, not "},
		{"socket of another user", true, true, func(t *testing.T, dir, sock string) string {
			if err := os.Chown(sock, other, other); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "control socket DIR/lab.sock belongs to uid 65534, not "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to give a file to another user")
			}
			runtime := t.TempDir()
			dir := filepath.Join(runtime, "ustack")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "lab.sock")
			accepted := listenCounting(t, sock)
			// A dead socket that List would remove from a directory of ours.
			dead := filepath.Join(dir, "dead.sock")
			ln, err := net.Listen("unix", dead)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close()

			used := tc.set(t, dir, sock)
			want := strings.ReplaceAll(tc.reason, "DIR", used)
			_, err = DialSocket(context.Background(), filepath.Join(used, "lab.sock"))
			var ue *UntrustedError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
				t.Errorf("DialSocket: %v, want an UntrustedError saying %q", err, want)
			}
			t.Setenv("XDG_RUNTIME_DIR", filepath.Dir(used))
			if _, err := List(context.Background()); !errors.As(err, &ue) {
				t.Errorf("List: %v, want an UntrustedError", err)
			}
			if _, err := os.Stat(dead); !tc.socket && err != nil {
				t.Errorf("List removed a socket from a directory it does not trust: %v", err)
			}
			if n := accepted.Load(); n != 0 {
				t.Errorf("the server behind the socket accepted %d connections", n)
			}
		})
	}
}
