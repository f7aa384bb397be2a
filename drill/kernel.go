package drill

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelTarget runs a script against the Linux kernel, as packetdrill
// does: the executor's calls are real system calls in a network namespace
// of the run's own, and packets go in and out through a tun device there.
// Time is real time.
type kernelTarget struct {
	cfg   *Config
	start atomic.Int64 // real time's zero, in Unix nanoseconds
	ns    *netnsThread
	tun   *os.File
	x     *execClient
	ours  *os.File
	proc  *os.Process

	mu     sync.Mutex
	out    []*wire
	notify chan struct{}
	stopR  *os.File // closed to stop the sniffer
	stopW  *os.File
	done   chan struct{}
}

// newKernelTarget makes the namespace, its tun device and the executor.
func newKernelTarget(cfg *Config, logf func(string, ...any)) (target, error) {
	if os.Geteuid() != 0 {
		return nil, &skipError{"the kernel run needs root (a network namespace and a tun device)"}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return nil, &skipError{"the kernel run needs /dev/net/tun"}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, &skipError{"the kernel run needs ip (iproute2)"}
	}
	ns, err := newNetnsThread()
	if err != nil {
		return nil, err
	}
	k := &kernelTarget{cfg: cfg, ns: ns, notify: make(chan struct{}), done: make(chan struct{})}
	if err := k.setup(); err != nil {
		ns.stop()
		if k.tun != nil {
			k.tun.Close()
		}
		return nil, err
	}
	if err := k.x.ready(); err != nil {
		k.close()
		return nil, err
	}
	k.startClock()
	if k.stopR, k.stopW, err = os.Pipe(); err != nil {
		k.close()
		return nil, err
	}
	go k.sniff()
	return k, nil
}

const tunName = "drill0"

// setup configures the namespace and starts the executor in it.
func (k *kernelTarget) setup() error {
	cfg := k.cfg
	return k.ns.do(func() error {
		if err := runCmd("ip", "link", "set", "lo", "up"); err != nil {
			return err
		}
		tun, err := openTun(tunName)
		if err != nil {
			return err
		}
		k.tun = tun
		fam, nodad := "-4", []string{}
		if cfg.LocalIP.Is6() {
			fam, nodad = "-6", []string{"nodad"}
		}
		if err := runCmd("ip", "link", "set", tunName, "mtu", fmt.Sprint(cfg.MTU), "up"); err != nil {
			return err
		}
		if err := runCmd(append([]string{"ip", fam, "addr", "add", netip.PrefixFrom(cfg.LocalIP, cfg.localLen()).String(), "dev", tunName}, nodad...)...); err != nil {
			return err
		}
		remote := netip.PrefixFrom(cfg.RemoteIP, cfg.RemotePrefix).Masked()
		if err := runCmd("ip", fam, "route", "add", remote.String(), "dev", tunName); err != nil {
			return err
		}
		for _, kv := range cfg.Sysctls {
			if err := kernelSysctl(kv); err != nil {
				return err
			}
		}
		ours, theirs, err := controlPair()
		if err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		p, err := os.StartProcess(self, []string{"ustack-drill-executor"}, &os.ProcAttr{
			Env: executorEnviron(), Files: []*os.File{theirs, os.Stderr, os.Stderr}})
		theirs.Close()
		if err != nil {
			ours.Close()
			return fmt.Errorf("starting the executor: %w", err)
		}
		k.proc, k.ours = p, ours
		k.x = newExecClient(int(ours.Fd()), k.now)
		return nil
	})
}

// kernelSysctl sets KEY=VALUE, taking ustack's keys for their Linux names.
func kernelSysctl(kv string) error {
	k, v, _ := strings.Cut(kv, "=")
	if name, ok := linuxSysctl[strings.TrimSpace(k)]; ok {
		k = name
	}
	return runCmd("sysctl", "-q", "-w", strings.TrimSpace(k)+"="+v)
}

// linuxSysctl names ustack's --sysctl keys in Linux's terms, where Linux
// has the same knob.
var linuxSysctl = map[string]string{
	"tcp.cc": "net.ipv4.tcp_congestion_control", "tcp.sack": "net.ipv4.tcp_sack",
	"tcp.rack": "net.ipv4.tcp_recovery", "tcp.moderate_rcvbuf": "net.ipv4.tcp_moderate_rcvbuf",
	"tcp.wmem": "net.ipv4.tcp_wmem", "tcp.rmem": "net.ipv4.tcp_rmem",
}

// runCmd runs a command and reports its output on failure.
func runCmd(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// openTun creates the tun device (IP packets, no packet information).
func openTun(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	var ifr [unix.IFNAMSIZ + 64]byte
	copy(ifr[:], name)
	*(*uint16)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, e)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// sniff reads what the kernel sends on the tun device, on a thread of its
// own that sleeps in poll(2), so that a packet is stamped the moment the
// kernel hands it over (not when a busy scheduler gets to a goroutine).
func (k *kernelTarget) sniff() {
	defer close(k.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 65536)
	tun, stop := int(k.tun.Fd()), int(k.stopR.Fd())
	for {
		p := []unix.PollFd{{Fd: int32(tun), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
		if _, err := unix.Poll(p, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if p[1].Revents != 0 {
			return
		}
		if p[0].Revents&unix.POLLIN == 0 {
			continue
		}
		n, err := unix.Read(tun, buf)
		if err != nil {
			return
		}
		at := k.now()
		w, err := parseWire(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		w.at = at
		k.mu.Lock()
		k.out = append(k.out, w)
		close(k.notify)
		k.notify = make(chan struct{})
		k.mu.Unlock()
	}
}

func (k *kernelTarget) name() string  { return "kernel" }
func (k *kernelTarget) virtual() bool { return false }
func (k *kernelTarget) now() int64 {
	return (time.Now().UnixNano() - k.start.Load()) / int64(time.Microsecond)
}
func (k *kernelTarget) startClock()                 { k.start.Store(time.Now().UnixNano()) }
func (k *kernelTarget) nextDeadline() (int64, bool) { return 0, false }
func (k *kernelTarget) advanceTo(int64)             {}
func (k *kernelTarget) settle() error               { return nil }
func (k *kernelTarget) exec() *execClient           { return k.x }
func (k *kernelTarget) blocked(c *pending) bool     { return sleepingIn(c.tid, c.nr) }

func (k *kernelTarget) inject(b []byte) error {
	_, err := k.tun.Write(b)
	return err
}

func (k *kernelTarget) outbound(until time.Time) []*wire {
	k.mu.Lock()
	if len(k.out) == 0 {
		ch := k.notify
		k.mu.Unlock()
		if d := time.Until(until); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ch:
			case <-t.C:
			}
			t.Stop()
		}
		k.mu.Lock()
	}
	out := k.out
	k.out = nil
	k.mu.Unlock()
	return out
}

// command runs a script's shell command in the namespace.
func (k *kernelTarget) command(cmd string) error {
	return k.ns.do(func() error { return runCmd("sh", "-c", cmd) })
}

func (k *kernelTarget) close() error {
	k.ours.Close() // the executor reads EOF and exits
	done := make(chan struct{})
	go func() { k.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		k.proc.Kill()
		<-done
	}
	if k.stopW != nil {
		k.stopW.Close() // the sniffer returns
		<-k.done
		k.stopR.Close()
	}
	k.tun.Close()
	k.ns.stop() // the namespace goes with its last thread and process
	return nil
}

// netnsThread is an OS thread in a network namespace of its own, which
// runs what must happen there (creating the tun device, ip and sysctl
// commands, starting the executor, which inherits the namespace).
type netnsThread struct {
	jobs chan func()
	quit chan struct{}
}

func newNetnsThread() (*netnsThread, error) {
	t := &netnsThread{jobs: make(chan func()), quit: make(chan struct{})}
	errc := make(chan error)
	go func() {
		// The thread never returns to the runtime's pool: it ends with
		// this goroutine, and the namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		errc <- nil
		for {
			select {
			case f := <-t.jobs:
				f()
			case <-t.quit:
				return
			}
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

// do runs f on the namespace's thread.
func (t *netnsThread) do(f func() error) error {
	errc := make(chan error, 1)
	t.jobs <- func() { errc <- f() }
	return <-errc
}

func (t *netnsThread) stop() { close(t.quit) }
