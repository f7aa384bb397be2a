package server_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/portd"
	"github.com/ustack/ustack/portd/server"
)

// TestListenModes: whatever the umask, the directory Listen makes for its
// socket is 0755 and the socket 0666, so that every user can reach it.
func TestListenModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("portd's Listen needs root (it removes stale nftables tables)")
	}
	dir := filepath.Join(t.TempDir(), "run", "ustack-portd")
	old := syscall.Umask(0o077)
	srv, err := server.Listen(filepath.Join(dir, "portd.sock"), nil, t.Logf)
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

// TestDefaultSocketBesideRootStacks: with portd at DefaultSocket and root
// running stacks with the default control directory (one of them called
// "portd", and root's 'ustack ls' looking through the directory), a user
// other than root still reaches portd, before and after the stacks stop.
// When portd's socket was in root's control directory, the first stack
// made the directory 0700 and the second replaced the socket with its own.
// The child does it all on its own /run (a tmpfs in a mount namespace of
// its own) and in a network namespace of its own.
func TestDefaultSocketBesideRootStacks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs root's stacks and portd, and a client as nobody")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), "USTACK_PORTD_TEST=beside-root-stacks")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(string(out), "ok\n") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// besideRootStacks is the child of TestDefaultSocketBesideRootStacks.
func besideRootStacks() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("a tmpfs on /run: %w", err)
	}
	os.Unsetenv("XDG_RUNTIME_DIR")
	ctx := context.Background()
	stack := func(name string) (*control.Server, error) {
		s, err := control.Listen(name, nil)
		if err != nil {
			return nil, err
		}
		s.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
			control.WriteJSON(w, control.Info{Name: name, PID: os.Getpid(), Socket: s.Path()})
		})
		go s.Serve(ctx)
		fmt.Println("root's stack", name, "on", s.Path())
		return s, nil
	}
	web, err := stack("web")
	if err != nil {
		return err
	}
	srv, err := server.Listen(portd.DefaultSocket, nil, func(f string, a ...any) { fmt.Printf(f+"\n", a...) })
	if err != nil {
		return err
	}
	go srv.Serve(ctx)
	named, err := stack("portd")
	if err != nil {
		return err
	}
	infos, err := control.List(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, i := range infos {
		names = append(names, i.Name)
	}
	if got := strings.Join(names, " "); got != "portd web" {
		return fmt.Errorf("root's ls lists %q, want \"portd web\"", got)
	}

	// A client as nobody, from a copy of this binary that nobody may run.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		return err
	}
	bin := "/run/portd-client.test"
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		return err
	}
	status := func(when string) error {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "USTACK_PORTD_TEST=status "+portd.DefaultSocket)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "holders 0\n" {
			return fmt.Errorf("nobody asking portd %s: %v: %s", when, err, out)
		}
		fmt.Println("nobody reaches portd", when)
		return nil
	}
	if err := status("while root's stacks run"); err != nil {
		return err
	}
	named.Close()
	web.Close()
	if err := status("after root's stacks stopped"); err != nil {
		return err
	}
	if err := srv.Close(); err != nil {
		return err
	}
	fmt.Println("ok")
	return nil
}
