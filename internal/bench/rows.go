package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// A row is one measurement, made for every variant.
type row struct {
	name  string
	title string
	unit  string
	// lower is true when a smaller figure is better (latencies).
	lower   bool
	needs   []string
	measure func(ctx context.Context, e *env, v *variant) (float64, error)
}

var rows = []row{
	{name: "iperf-send", title: "iperf3 guest → host, MTU 65520", unit: "Gbit/s", needs: []string{"iperf3"},
		measure: func(ctx context.Context, e *env, v *variant) (float64, error) { return iperf(ctx, e, v, false) }},
	{name: "iperf-recv", title: "iperf3 host → guest, MTU 65520", unit: "Gbit/s", needs: []string{"iperf3"},
		measure: func(ctx context.Context, e *env, v *variant) (float64, error) { return iperf(ctx, e, v, true) }},
	{name: "rr-tcp", title: "TCP request–response, 14 B, p50", unit: "µs", lower: true,
		measure: func(ctx context.Context, e *env, v *variant) (float64, error) {
			out, err := e.guest(ctx, v, e.self, "rr-client", hostPort(v.hostAddr, portRR), e.o.duration.String())
			if err != nil {
				return 0, err
			}
			return parseKey(out, "p50_us")
		}},
	{name: "rr-udp", title: "UDP sockperf ping-pong, 14 B, p50", unit: "µs", lower: true, needs: []string{"sockperf"},
		measure: func(ctx context.Context, e *env, v *variant) (float64, error) {
			out, err := e.guest(ctx, v, "sockperf", "pp", "-i", v.hostAddr, "-p", strconv.Itoa(portUDP),
				"-m", "14", "-t", seconds(e.o.duration))
			if err != nil {
				return 0, err
			}
			return parseSockperf(out)
		}},
	{name: "nginx-ka", title: "nginx (1 worker, 1 KiB) in the guest, wrk keep-alive", unit: "req/s", needs: []string{"nginx", "wrk"},
		measure: func(ctx context.Context, e *env, v *variant) (float64, error) { return nginxGuest(ctx, e, v, false) }},
	{name: "nginx-close", title: "the same, `Connection: close`", unit: "req/s", needs: []string{"nginx", "wrk"},
		measure: func(ctx context.Context, e *env, v *variant) (float64, error) { return nginxGuest(ctx, e, v, true) }},
	{name: "wrk-guest", title: "wrk in the guest against nginx on the host, `Connection: close`", unit: "req/s", needs: []string{"nginx", "wrk"},
		measure: func(ctx context.Context, e *env, v *variant) (float64, error) {
			out, err := e.guest(ctx, v, wrkArgs(e, "http://"+hostPort(v.hostAddr, portNginxH)+"/1k", true)...)
			if err != nil {
				return 0, err
			}
			return parseWrk(out)
		}},
	{name: "connect", title: "connect + close, one after another", unit: "per s",
		measure: func(ctx context.Context, e *env, v *variant) (float64, error) {
			out, err := e.guest(ctx, v, e.self, "cc-client", hostPort(v.hostAddr, portCC), e.o.duration.String())
			if err != nil {
				return 0, err
			}
			return parseKey(out, "per_s")
		}},
	{name: "pgbench", title: "`pgbench -S`, 8 clients, PostgreSQL in the guest", unit: "tps",
		needs:   []string{"postgres", "initdb", "pgbench", "pg_isready", "runuser"},
		measure: pgbench},
}

func rowNames() []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.name)
	}
	return out
}

func rowByName(name string) row {
	for _, r := range rows {
		if r.name == name {
			return r
		}
	}
	panic("unknown row " + name)
}

func hostPort(host string, port int) string { return fmt.Sprintf("%s:%d", host, port) }

func seconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
}

// guest runs argv as the guest of v to its end.
func (e *env) guest(ctx context.Context, v *variant, argv ...string) (string, error) {
	return e.output(ctx, e.o.duration+60*time.Second, v.wrap(e, argv))
}

// peer runs argv on v's peer to its end.
func (e *env) peer(ctx context.Context, v *variant, argv ...string) (string, error) {
	return e.output(ctx, e.o.duration+60*time.Second, inNS(v.peerNS, argv))
}

func iperf(ctx context.Context, e *env, v *variant, reverse bool) (float64, error) {
	argv := []string{"iperf3", "-c", v.hostAddr, "-p", strconv.Itoa(portIperf), "-t", seconds(e.o.duration), "-J"}
	if reverse {
		argv = append(argv, "-R")
	}
	out, err := e.guest(ctx, v, argv...)
	if err != nil {
		return 0, err
	}
	return parseIperf(out)
}

func wrkArgs(e *env, url string, close bool) []string {
	argv := []string{"wrk", "-t1", "-c8", "-d" + seconds(e.o.duration)}
	if close {
		argv = append(argv, "-H", "Connection: close")
	}
	return append(argv, url)
}

// nginxGuest serves 1 KiB from nginx in the guest and measures it with wrk on
// the peer.
func nginxGuest(ctx context.Context, e *env, v *variant, close bool) (float64, error) {
	conf, err := e.nginxConf("guest", portNginxG)
	if err != nil {
		return 0, err
	}
	srv, err := e.start("nginx guest", v.wrap(e, []string{"nginx", "-e", filepath.Join(e.dir, "nginx-guest.err"), "-c", conf}))
	if err != nil {
		return 0, err
	}
	defer srv.stop(syscall.SIGTERM)
	url := "http://" + hostPort(v.guestAddr, portNginxG+v.portOffset) + "/1k"
	if err := e.waitFor(ctx, inNS(v.peerNS, []string{e.self, "wait-http", url})); err != nil {
		return 0, fmt.Errorf("nginx in the guest: %w (%s)", err, srv.out.String())
	}
	out, err := e.peer(ctx, v, wrkArgs(e, url, close)...)
	if err != nil {
		return 0, err
	}
	return parseWrk(out)
}

// preparePostgres makes a database cluster for pgbench once, with the
// kernel's network, and reuses it for every variant.
func (e *env) preparePostgres(ctx context.Context) error {
	if e.pgReady {
		return nil
	}
	data := filepath.Join(e.dir, "pgdata")
	for _, d := range []string{data, filepath.Join(e.dir, "pgsock")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if out, err := exec.Command("chown", "postgres:postgres", d).CombinedOutput(); err != nil {
			return fmt.Errorf("chown %s: %w: %s", d, err, out)
		}
	}
	initdb, _ := findProgram("initdb")
	if _, err := e.output(ctx, 2*time.Minute, []string{"runuser", "-u", "postgres", "--", initdb, "-D", data, "-A", "trust", "-U", "postgres"}); err != nil {
		return err
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fmt.Fprintln(hba, "host all all 0.0.0.0/0 trust\nhost all all ::/0 trust")
	hba.Close()
	kernel := newVariant("kernel", "")
	srv, err := e.startPostgres(ctx, kernel)
	if err != nil {
		return err
	}
	defer srv.stop(syscall.SIGINT)
	if _, err := e.output(ctx, 2*time.Minute, []string{"pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", strconv.Itoa(portPostgres), "-U", "postgres", "postgres"}); err != nil {
		return err
	}
	e.pgReady = true
	return nil
}

func (e *env) startPostgres(ctx context.Context, v *variant) (*proc, error) {
	postgres, _ := findProgram("postgres")
	srv, err := e.start("postgres guest", v.wrap(e, []string{"runuser", "-u", "postgres", "--", postgres,
		"-D", filepath.Join(e.dir, "pgdata"), "-p", strconv.Itoa(portPostgres), "-k", filepath.Join(e.dir, "pgsock"),
		"-c", "listen_addresses=*"}))
	if err != nil {
		return nil, err
	}
	isready, _ := findProgram("pg_isready")
	if err := e.waitFor(ctx, inNS(v.peerNS, []string{isready, "-q", "-h", v.guestAddr, "-p", strconv.Itoa(portPostgres + v.portOffset), "-t", "2"})); err != nil {
		srv.stop(syscall.SIGINT)
		return nil, fmt.Errorf("postgres in the guest: %w (%s)", err, srv.out.String())
	}
	return srv, nil
}

func pgbench(ctx context.Context, e *env, v *variant) (float64, error) {
	if err := e.preparePostgres(ctx); err != nil {
		return 0, fmt.Errorf("preparing the database: %w", err)
	}
	srv, err := e.startPostgres(ctx, v)
	if err != nil {
		return 0, err
	}
	defer srv.stop(syscall.SIGINT)
	out, err := e.peer(ctx, v, "pgbench", "-n", "-S", "-c", "8", "-j", "2", "-T", seconds(e.o.duration),
		"-h", v.guestAddr, "-p", strconv.Itoa(portPostgres+v.portOffset), "-U", "postgres", "postgres")
	if err != nil {
		return 0, err
	}
	return parsePgbench(out)
}

// results holds every round's figure per row and variant, and the last
// failure of a measurement that did not give one.
type results struct {
	values map[string]map[string][]float64
	errs   map[string]map[string]string
}

func measure(ctx context.Context, o options) (*results, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ustack-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	e := &env{o: o, dir: dir, self: self, ustack: o.ustack, peers: map[string]bool{}}
	if err := e.prepareFiles(); err != nil {
		return nil, err
	}
	if e.ustack == "" && needsUstack(o.variants) {
		e.ustack = filepath.Join(dir, "ustack")
		fmt.Fprintln(os.Stderr, "bench: building ./cmd/ustack")
		if out, err := exec.Command("go", "build", "-o", e.ustack, "./cmd/ustack").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/ustack (run from the repository's root): %w: %s", err, out)
		}
	}
	e.gateway = defaultGateway()
	var vs []*variant
	for _, name := range o.variants {
		vs = append(vs, newVariant(name, e.gateway))
	}
	defer e.teardown()
	if err := e.setup(ctx, vs); err != nil {
		return nil, err
	}
	res := &results{values: map[string]map[string][]float64{}, errs: map[string]map[string]string{}}
	for round := 1; round <= o.rounds; round++ {
		for _, rn := range o.rows {
			r := rowByName(rn)
			// The variants take turns, and start from a different one in each round.
			for i := range vs {
				v := vs[(i+round-1)%len(vs)]
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				val, err := r.measure(ctx, e, v)
				if res.values[rn] == nil {
					res.values[rn], res.errs[rn] = map[string][]float64{}, map[string]string{}
				}
				if err != nil {
					res.errs[rn][v.name] = err.Error()
					fmt.Fprintf(os.Stderr, "bench: round %d %s %s: %v\n", round, rn, v.name, err)
					continue
				}
				res.values[rn][v.name] = append(res.values[rn][v.name], val)
				fmt.Fprintf(os.Stderr, "bench: round %d %-11s %-11s %10.1f %s\n", round, rn, v.name, val, r.unit)
			}
		}
	}
	return res, nil
}

func needsUstack(variants []string) bool {
	for _, v := range variants {
		if v == "ustack" || v == "tap" || v == "host" {
			return true
		}
	}
	return false
}

func defaultGateway() string {
	out, err := exec.Command("ip", "-4", "route", "show", "default").Output()
	if err != nil {
		return ""
	}
	var via string
	fmt.Sscanf(string(out), "default via %s", &via)
	return via
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
