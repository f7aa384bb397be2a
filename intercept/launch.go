// Package intercept runs a program under a seccomp filter whose socket
// calls are sent to this process (seccomp user notification) and gives a
// Handler the means to answer them: read and write the program's memory,
// take copies of its fds, inject fds into it, and reply. It knows nothing
// of networks; package sockets decides what the answers are.
//
// Go cannot run code between fork and exec, so the filter is installed by
// a helper: this same binary re-executed with a marker in its environment
// (IsHelper, HelperMain). The helper installs the filter on its one locked
// thread, hands the listener's fd number to the supervisor over a pipe,
// waits for the go-ahead and execs the program, which inherits the filter.
// The supervisor takes the listener out of the helper with pidfd_getfd.
package intercept

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// helperEnv marks the re-executed helper. It is removed from the
// environment before the program runs.
const helperEnv = "USTACK_INTERCEPT_HELPER"

// The helper's inherited pipes (exec.Cmd.ExtraFiles start at fd 3).
const (
	helperReportFD = 3 // helper -> supervisor: "ok FD" or "error MESSAGE"
	helperGoFD     = 4 // supervisor -> helper: one byte means exec, EOF means exit
)

// IsHelper reports whether this process is the launch helper or a
// warden (StartWarden). Call it first thing in main, before anything else
// runs.
func IsHelper() bool { return os.Getenv(helperEnv) != "" }

// HelperMain installs the filter and execs the program named in os.Args,
// or runs the warden; it never returns.
func HelperMain() {
	if os.Getenv(helperEnv) == wardenMode {
		wardenMain()
	}
	// The filter is installed on this thread only (no TSYNC): execve below
	// runs on the same thread and the new image keeps its filter.
	runtime.LockOSThread()
	os.Unsetenv(helperEnv)
	report := os.NewFile(helperReportFD, "report")
	goAhead := os.NewFile(helperGoFD, "go")
	// The program must not inherit the pipes.
	unix.CloseOnExec(helperReportFD)
	unix.CloseOnExec(helperGoFD)
	if len(os.Args) < 3 {
		fmt.Fprintln(report, "error helper: missing program")
		os.Exit(127)
	}
	path, argv := os.Args[1], os.Args[2:]
	fd, err := installFilter()
	if err != nil {
		fmt.Fprintf(report, "error %v\n", err)
		os.Exit(127)
	}
	fmt.Fprintf(report, "ok %d\n", fd)
	report.Close()
	var b [1]byte
	if n, _ := goAhead.Read(b[:]); n != 1 {
		os.Exit(127) // the supervisor gave up
	}
	goAhead.Close()
	unix.Close(fd) // the supervisor holds its own copy now
	err = unix.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "ustack: run: %s: %v\n", path, err)
	os.Exit(127)
}

// installFilter sets no_new_privs (required to install a filter without
// CAP_SYS_ADMIN, and it keeps setuid programs from gaining privileges
// under us) and installs the filter on the calling thread.
func installFilter() (int, error) {
	filter, err := buildFilter()
	if err != nil {
		return -1, err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	fd, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if e != 0 {
		return -1, fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER): %w", e)
	}
	return int(fd), nil
}

// CheckKernel refuses kernels without SECCOMP_ADDFD_FLAG_SEND (5.14), the
// atomic inject-and-reply that keeps an interrupted call from leaking fds.
func CheckKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	major, minor, ok := parseRelease(rel)
	if !ok {
		return nil // an unparsable release: let the system calls decide
	}
	if major < 5 || major == 5 && minor < 14 {
		return fmt.Errorf("Linux %s is too old: ustack run needs 5.14 or later (seccomp user notification with SECCOMP_ADDFD_FLAG_SEND)", rel)
	}
	return nil
}

func parseRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minorStr := parts[1]
	if i := strings.IndexFunc(minorStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorStr = minorStr[:i]
	}
	minor, err2 := strconv.Atoi(minorStr)
	return major, minor, err1 == nil && err2 == nil
}

// Config says what to run and who answers its socket calls.
type Config struct {
	Path string   // the program; looked up in PATH if it has no slash
	Args []string // argv, including argv[0]
	Env  []string // nil means this process's environment

	Stdin, Stdout, Stderr *os.File

	// Handler answers every notified call; see Call.
	Handler Handler
	// Logf reports the supervisor's own trouble (nil: discard).
	Logf func(format string, args ...any)
	// Warden, if set, gets a copy of the program's listener (Start only):
	// should this process die while the program or anything it forked
	// still runs, the warden kills each of them at its next socket call
	// instead of leaving it to spin on calls that fail.
	Warden *Warden
}

// launch starts the helper and returns it with the listener fd it
// installed, taken into this process.
func launch(cfg *Config) (*exec.Cmd, int, error) {
	path := cfg.Path
	if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			return nil, -1, fmt.Errorf("%s: %w", path, errors.Unwrap(err))
		}
		path = p
	}
	self, err := os.Executable()
	if err != nil {
		return nil, -1, fmt.Errorf("finding ustack's own executable to re-run as the launch helper: %w", err)
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return nil, -1, err
	}
	defer reportR.Close()
	goR, goW, err := os.Pipe()
	if err != nil {
		reportW.Close()
		return nil, -1, err
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	cmd := &exec.Cmd{
		Path:       self,
		Args:       append([]string{"ustack-launch", path}, cfg.Args...),
		Env:        append(append([]string(nil), env...), helperEnv+"=1"),
		Stdin:      cfg.Stdin,
		Stdout:     cfg.Stdout,
		Stderr:     cfg.Stderr,
		ExtraFiles: []*os.File{reportW, goR},
	}
	err = cmd.Start()
	reportW.Close()
	goR.Close()
	if err != nil {
		goW.Close()
		return nil, -1, fmt.Errorf("starting the launch helper: %w", err)
	}
	fail := func(err error) (*exec.Cmd, int, error) {
		goW.Close() // the helper exits without running the program
		cmd.Wait()
		return nil, -1, err
	}
	line, _ := bufio.NewReader(reportR).ReadString('\n')
	line = strings.TrimSpace(line)
	msg, isErr := strings.CutPrefix(line, "error ")
	if isErr {
		return fail(fmt.Errorf("installing the seccomp filter: %s", msg))
	}
	numStr, ok := strings.CutPrefix(line, "ok ")
	remote, err := strconv.Atoi(numStr)
	if !ok || err != nil {
		return fail(fmt.Errorf("launch helper said %q, not its listener fd", line))
	}
	listener, err := takeFD(cmd.Process.Pid, remote)
	if err != nil {
		return fail(fmt.Errorf("taking the seccomp listener from the launch helper: %w", err))
	}
	// Wake the target synchronously on our reply (6.6+); it roughly halves
	// the cost of a notification. Older kernels say EINVAL: go on without.
	if err := ioctlVal(listener, unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP); err != nil && !errors.Is(err, unix.EINVAL) {
		unix.Close(listener)
		return fail(fmt.Errorf("SECCOMP_IOCTL_NOTIF_SET_FLAGS: %w", err))
	}
	if _, err := goW.Write([]byte{1}); err != nil {
		unix.Close(listener)
		return fail(fmt.Errorf("releasing the launch helper: %w", err))
	}
	goW.Close()
	return cmd, listener, nil
}

// TakeFD copies fd number remote out of process pid (close-on-exec here).
func TakeFD(pid, remote int) (int, error) { return takeFD(pid, remote) }

func takeFD(pid, remote int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open(%d): %w", pid, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, remote, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd(%d, %d): %w", pid, remote, err)
	}
	unix.CloseOnExec(fd)
	return fd, nil
}
