// Package testprog finds the programs that tests run, each in the variant
// the tests are written for. Every program a test looks up is in one table
// with the Debian package that provides it, so a test whose program is
// missing skips naming the package to install, and scripts/test.sh can be
// held to install them all (TestScriptInstallsEveryPackage).
//
// Where Debian has several programs of one name (nc is netcat-openbsd's,
// netcat-traditional's or nmap's ncat; ping is iputils' or inetutils'), the
// tests ask for a name only the right package installs (nc.openbsd), or the
// table says how to tell the variant from another (ping -V).
package testprog

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// A program is a command that tests run.
type program struct {
	// pkgs are the Debian packages it needs.
	pkgs []string
	// install says how to get it when no Debian package provides it.
	install string
	// variant, if set, tells whether the program found is the one the
	// tests are written for, not another of the same name.
	variant func(path string) error
}

// programs is every program a test looks up, by the name tests run it by.
var programs = map[string]program{
	// The shell and the tools the tests' shell scripts use.
	"sh":        {pkgs: []string{"dash"}},
	"env":       {pkgs: []string{"coreutils"}},
	"sha256sum": {pkgs: []string{"coreutils"}},
	"grep":      {pkgs: []string{"grep"}},
	"unshare":   {pkgs: []string{"util-linux"}},
	"nsenter":   {pkgs: []string{"util-linux"}},
	"sleep":     {pkgs: []string{"coreutils"}},
	"setpriv":   {pkgs: []string{"util-linux"}},
	"chrt":      {pkgs: []string{"util-linux"}},
	"mount":     {pkgs: []string{"mount"}},
	"getent":    {pkgs: []string{"libc-bin"}},
	"sysctl":    {pkgs: []string{"procps"}},
	// The tests make namespaces, veth pairs and taps with ip; busybox has
	// an ip without netns.
	"ip": {pkgs: []string{"iproute2"}, variant: says([]string{"-V"}, "iproute2")},
	"ss": {pkgs: []string{"iproute2"}, variant: says([]string{"-V"}, "iproute2")},
	// inetutils-ping installs a ping too, with other flags and output.
	"ping": {pkgs: []string{"iputils-ping"}, variant: says([]string{"-V"}, "iputils")},
	// The tests use OpenBSD netcat's -N and -W; nc may be ncat or
	// netcat-traditional, nc.openbsd is only netcat-openbsd's.
	"nc.openbsd": {pkgs: []string{"netcat-openbsd"}},
	"curl":       {pkgs: []string{"curl"}},
	// GNU Wget, not busybox's applet nor Wget2.
	"wget":            {pkgs: []string{"wget"}, variant: says([]string{"--version"}, "GNU Wget ")},
	"python3":         {pkgs: []string{"python3"}},
	"hostname":        {pkgs: []string{"hostname"}},
	"java":            {pkgs: []string{"default-jre-headless"}},
	"javac":           {pkgs: []string{"default-jdk-headless"}},
	"socat":           {pkgs: []string{"socat"}},
	"dig":             {pkgs: []string{"bind9-dnsutils"}},
	"redis-server":    {pkgs: []string{"redis-server"}},
	"redis-cli":       {pkgs: []string{"redis-tools"}},
	"redis-benchmark": {pkgs: []string{"redis-tools"}},
	"nginx":           {pkgs: []string{"nginx"}},
	"iperf3":          {pkgs: []string{"iperf3"}},
	"sockperf":        {pkgs: []string{"sockperf"}},
	"ssh":             {pkgs: []string{"openssh-client"}},
	"ssh-keygen":      {pkgs: []string{"openssh-client"}},
	"sshd":            {pkgs: []string{"openssh-server"}},
	"tshark":          {pkgs: []string{"tshark"}},
	"tcpdump":         {pkgs: []string{"tcpdump"}},
	"tmux":            {pkgs: []string{"tmux"}},
	"git":             {pkgs: []string{"git"}},
	// Graphviz draws ustack lab graph's pictures.
	"dot": {pkgs: []string{"graphviz"}},
	// The VXLAN tests turn checksum offload off on a kernel vxlan device.
	"ethtool": {pkgs: []string{"ethtool"}},
	// A C compiler is not enough: the C library's headers come apart.
	"gcc": {pkgs: []string{"gcc", "libc6-dev"}, variant: compilesC},
	"dlv": {install: "go install github.com/go-delve/delve/cmd/dlv@v1.27.2"},
}

// Need returns the path of the program name, or skips t saying what to
// install when it is missing or is another program of the same name.
// Programs in /usr/sbin and /sbin are found even when PATH lacks them (as
// an ordinary user's often does). name must be in the table.
func Need(t testing.TB, name string) string {
	t.Helper()
	p, ok := programs[name]
	if !ok {
		t.Fatalf("testprog: %s is not in the table of programs tests run (internal/testprog): add it with its Debian package", name)
	}
	path, err := lookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: %s", name, p.how())
	}
	if p.variant != nil {
		if err := checkVariant(path, p.variant); err != nil {
			t.Skipf("%s is not the %s the tests are written for (%v): %s", path, name, err, p.how())
		}
	}
	return path
}

// Packages returns the Debian packages of every program in the table,
// sorted.
func Packages() []string {
	var pkgs []string
	for _, p := range programs {
		pkgs = append(pkgs, p.pkgs...)
	}
	slices.Sort(pkgs)
	return slices.Compact(pkgs)
}

func (p program) how() string {
	if len(p.pkgs) == 0 {
		return p.install + " (scripts/test.sh does)"
	}
	return "apt-get install " + strings.Join(p.pkgs, " ") + " (scripts/test.sh does)"
}

func lookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, serr := os.Stat(p); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", err
}

// variants caches what the variant checks said, by path: a check runs the
// program, and many tests ask for the same one.
var variants sync.Map // path -> error (nil: the right variant)

func checkVariant(path string, check func(string) error) error {
	if v, ok := variants.Load(path); ok {
		err, _ := v.(error)
		return err
	}
	err := check(path)
	variants.Store(path, err)
	return err
}

// says is a variant check: the program run with args prints want.
func says(args []string, want string) func(string) error {
	return func(path string) error {
		out, _ := exec.Command(path, args...).CombinedOutput()
		if !strings.Contains(string(out), want) {
			first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
			return fmt.Errorf("%s %s printed %q, not %q", filepath.Base(path), strings.Join(args, " "), first, want)
		}
		return nil
	}
}

// compilesC checks that the compiler at path finds the C library's headers.
func compilesC(path string) error {
	cmd := exec.Command(path, "-fsyntax-only", "-x", "c", "-")
	cmd.Stdin = strings.NewReader("#include <stdio.h>\nint main(void) { return puts(\"\"); }\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return fmt.Errorf("it cannot compile against the C library's headers: %v: %s", err, first)
	}
	return nil
}

// TsharkFields runs tshark (its path) on the capture file and returns one
// line per packet matching the display filter, the fields tab-separated
// (numeric: no name resolution).
func TsharkFields(t testing.TB, tshark, file, filter string, fields ...string) []string {
	t.Helper()
	args := []string{"-n", "-r", file, "-Y", filter, "-T", "fields"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	b, err := exec.Command(tshark, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("tshark %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
