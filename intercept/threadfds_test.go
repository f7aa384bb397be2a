package intercept

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func openSelf(t *testing.T) int {
	t.Helper()
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	return fd
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// TestThreadFDCache: a kept pidfd is handed out again, closed when its thread
// is found dead or the cache is emptied, and never while a call uses it.
func TestThreadFDCache(t *testing.T) {
	var pc threadFDCache
	a := openSelf(t)
	pc.put(100, a)
	fd, release, ok := pc.get(100)
	if !ok || fd != a {
		t.Fatalf("get(100) = %d, %v; want %d, true", fd, ok, a)
	}
	// Replaced while in use: the old one stays open until released.
	b := openSelf(t)
	pc.put(100, b)
	if !isOpen(a) {
		t.Fatal("a pidfd in use was closed when replaced")
	}
	release(false)
	if isOpen(a) {
		t.Fatal("a replaced pidfd stayed open after its last use")
	}
	// A dead thread's pidfd is evicted and closed.
	fd, release, ok = pc.get(100)
	if !ok || fd != b {
		t.Fatalf("get(100) = %d, %v; want %d, true", fd, ok, b)
	}
	release(true)
	if _, _, ok := pc.get(100); ok || isOpen(b) {
		t.Fatalf("a dead thread's pidfd is still kept (%v) or open (%v)", ok, isOpen(b))
	}
	// The cache stays bounded, and closeAll closes what it kept.
	var fds []int
	for tid := range maxThreadFDs + 1 {
		fd := openSelf(t)
		fds = append(fds, fd)
		pc.put(1000+tid, fd)
	}
	if n := len(pc.m); n > maxThreadFDs {
		t.Fatalf("%d pidfds kept, at most %d wanted", n, maxThreadFDs)
	}
	pc.closeAll()
	for _, fd := range fds {
		if isOpen(fd) {
			t.Fatalf("pidfd %d open after closeAll", fd)
		}
	}
}
