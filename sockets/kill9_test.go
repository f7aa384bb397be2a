package sockets_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/internal/testwait"
)

// TestKillNineCycles kill -9s, USTACK_KILL_CYCLES times (it is skipped
// without), each of: a program under a 'ustack run' of its own, mid
// transfer; a daemon serving a program mid transfer (then that program,
// if still there); and a program attached to a daemon that lives through
// the whole run. Four workers run the cycles at once. Afterwards nothing
// may be left: no process started, no connection to the host's server
// but those waiting out TIME-WAIT, no file in the runtime directory but
// the live daemon's and one stale socket and lock per killed daemon name,
// no nftables table more than before; the live daemon and this process
// hold no more goroutines and descriptors than before.
//
//	USTACK_KILL_CYCLES=1000 go test -count=1 -run TestKillNineCycles -timeout 60m ./sockets
func TestKillNineCycles(t *testing.T) {
	cycles, _ := strconv.Atoi(os.Getenv("USTACK_KILL_CYCLES"))
	if cycles < 1 {
		t.Skip("set USTACK_KILL_CYCLES=N to kill -9 programs and daemons N times each")
	}
	const workers = 4
	dir := t.TempDir()
	port := streamServer(t)
	target := fmt.Sprintf("10.0.2.2:%d", port)
	tablesBefore := ustackTables(t)
	live, _ := startDaemonIn(t, dir, "live")
	env := append(cleanEnv(), "XDG_RUNTIME_DIR="+dir)

	var mu sync.Mutex
	// Every process started, to find survivors: by pid and start time,
	// since pids are reused by the machine's other processes.
	var procs []process
	started := func(pid int) {
		mu.Lock()
		procs = append(procs, process{pid, startTime(pid)})
		mu.Unlock()
	}
	// streamProg starts netprog stream under 'ustack run' with flags and
	// returns the command once the program is receiving.
	streamProg := func(flags ...string) (*exec.Cmd, int, error) {
		cmd := exec.Command(ustackBin, append(append([]string{"run"}, flags...), "--", netprogBin, "stream", target)...)
		cmd.Env = env
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, 0, err
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return nil, 0, err
		}
		started(cmd.Process.Pid)
		var pid int
		line, _ := bufio.NewReader(out).ReadString('\n')
		if _, err := fmt.Sscanf(line, "pid %d", &pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, 0, fmt.Errorf("netprog stream said %q; stderr: %s", line, stderr.String())
		}
		started(pid)
		return cmd, pid, testwait.Until(t.Context(), "the program to receive", func() error { return readAtLeast(pid, 64<<10) })
	}
	exited := func(what string, cmd *exec.Cmd) error {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("%s still running 30 s after the kill", what)
		}
	}
	cycle := func(worker int) error {
		// A program under a 'ustack run' of its own.
		cmd, pid, err := streamProg()
		if err != nil {
			return err
		}
		syscall.Kill(pid, syscall.SIGKILL)
		if err := exited("ustack run", cmd); err != nil {
			return err
		}
		// A daemon serving a program.
		name := fmt.Sprintf("killed%d", worker)
		d, dcmd := startDaemonIn(t, dir, name)
		started(dcmd.Process.Pid)
		cmd, pid, err = streamProg("--stack", d.name)
		if err != nil {
			return err
		}
		dcmd.Process.Kill()
		dcmd.Wait()
		// The daemon's warden ends its programs; kill -9 it anyway in
		// case it did not, which the check for survivors then reports.
		if err := exited("ustack run --stack of a killed daemon", cmd); err != nil {
			syscall.Kill(pid, syscall.SIGKILL)
			return err
		}
		// A program of the daemon that lives on.
		cmd, pid, err = streamProg("--stack", live.name)
		if err != nil {
			return err
		}
		syscall.Kill(pid, syscall.SIGKILL)
		return exited("ustack run --stack", cmd)
	}

	// One cycle first: the live daemon starts its warden with its first
	// program, and this process its pools.
	if err := cycle(0); err != nil {
		t.Fatal(err)
	}
	base := live.settle(t, live.counts(t))
	fdsBefore, goroutinesBefore := countFDs(t), runtime.NumGoroutine()
	start := time.Now()
	work := make(chan int)
	var failed sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if err := cycle(w); err != nil {
					failed.Do(func() { t.Error(err) })
				}
			}
		}()
	}
	for i := 0; i < cycles && !t.Failed(); i++ {
		work <- i
		if i%100 == 99 {
			t.Logf("%d cycles in %v", i+1, time.Since(start).Round(time.Second))
		}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)

	after := live.settle(t, base)
	testwait.ForNil(t, "every process started to be gone", func() error {
		var alive []int
		for _, p := range procs {
			if p.start != "" && startTime(p.pid) == p.start && !isZombie(p.pid) {
				alive = append(alive, p.pid)
			}
		}
		if len(alive) > 0 {
			return fmt.Errorf("%d still running: %v", len(alive), alive[:min(len(alive), 10)])
		}
		return nil
	})
	testwait.ForNil(t, "no connection to the host's server but in TIME-WAIT", func() error {
		if n := openConnections(t, port); n > 0 {
			return fmt.Errorf("%d connections to port %d", n, port)
		}
		return nil
	})
	testwait.ForNil(t, "this process to hold no more than before", func() error {
		if fds, g := countFDs(t), runtime.NumGoroutine(); fds > fdsBefore || g > goroutinesBefore {
			return fmt.Errorf("%d fds and %d goroutines, %d and %d before", fds, g, fdsBefore, goroutinesBefore)
		}
		return nil
	})
	entries, err := os.ReadDir(dir + "/ustack")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	allowed := []string{"live.sock", "live.lock"}
	for w := 0; w < workers; w++ {
		allowed = append(allowed, fmt.Sprintf("killed%d.sock", w), fmt.Sprintf("killed%d.lock", w))
	}
	for _, f := range files {
		if !slices.Contains(allowed, f) {
			t.Errorf("the runtime directory holds %s after the cycles (all: %v)", f, files)
		}
	}
	if tables := ustackTables(t); tables > tablesBefore {
		t.Errorf("%d nftables tables of ustack's after the cycles, %d before", tables, tablesBefore)
	}
	t.Logf("%d cycles (%d kill -9 of programs, %d of daemons) in %v; live daemon before %+v, after %+v; runtime directory %v",
		cycles, 2*cycles, cycles, elapsed.Round(time.Second), base, after, files)
}

// countFDs is the number of descriptors this process holds.
func countFDs(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds) - 1 // the directory being read
}

type process struct {
	pid   int
	start string // startTime when it was started
}

// startTime is the start time of process pid (field 22 of its stat), ""
// if there is none.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:]) // from field 3 (state) on
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// isZombie reports whether pid has exited and waits to be reaped (by a
// parent outside the test, which is not a leak of ustack's).
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// openConnections counts the IPv4 TCP sockets to or from port on this
// machine that are neither listening nor in TIME-WAIT.
func openConnections(t *testing.T, port int) int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	hexPort := fmt.Sprintf(":%04X", port)
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] == "0A" || f[3] == "06" { // LISTEN, TIME_WAIT
			continue
		}
		if strings.HasSuffix(f[1], hexPort) || strings.HasSuffix(f[2], hexPort) {
			n++
		}
	}
	return n
}

// ustackTables counts the nftables tables whose names are ustack's
// (hostports.TablePrefix), or -1 when they cannot be listed (not root):
// then the comparison holds trivially, and the log says so.
func ustackTables(t *testing.T) int {
	if os.Geteuid() != 0 {
		t.Log("nftables not checked: listing tables needs root")
		return -1
	}
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatalf("listing nftables tables: %v", err)
	}
	n := 0
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, hostports.TablePrefix) {
			n++
		}
	}
	return n
}
