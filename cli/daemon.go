package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ustack/ustack/control"
)

func daemonCommand() *command {
	c := &command{name: "daemon", summary: "run a named, long-lived stack served on a control socket"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var sf stackFlags
		var mf metricsFlag
		var name string
		s.add(&option{names: []string{"name"}, arg: "NAME", value: stringValue{&name},
			help: "the stack's name; other commands reach it with --stack NAME (required)"})
		sf.register(s)
		mf.register(s)
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args); err != nil {
				return err
			}
			if err := checkName(name); err != nil {
				return err
			}
			return runDaemon(ctx, name, &sf, &mf, e)
		}
	}
	return c
}

func checkName(name string) error {
	if name == "" {
		return usagef("daemon: --name: missing (give the stack a name, e.g. --name lab1)")
	}
	if !control.ValidName(name) {
		return usagef("--name: %q is not a valid name (use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", name)
	}
	return nil
}

// daemonSocket is the control socket of the stack called name.
func daemonSocket(name string) (string, error) {
	if err := checkName(name); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return "", usagef("%s", strings.Replace(ue.msg, "--name", "--stack", 1))
		}
		return "", err
	}
	return control.SocketPath(name), nil
}

func runDaemon(ctx context.Context, name string, sf *stackFlags, mf *metricsFlag, e *env) error {
	prefix := "ustack daemon " + name
	logf := logTo(e, prefix)
	sf.verbose = true // a daemon's stderr is its log
	ss, err := openServedStack(name, "daemon", sf, mf, logf, logf)
	if err != nil {
		return err
	}
	defer ss.close(e)
	// Programs attached with 'ustack run --stack NAME' share the one
	// socket manager, so they reach each other through the stack.
	att := newAttacher(ss.mgr, logf)
	defer att.stop()
	ss.srv.HandleFunc("POST /v1/attach", att.serveAttach)
	ss.srv.HandleFunc("GET /v1/runtime", func(w http.ResponseWriter, r *http.Request) { att.serveRuntime(w, r, ss.st) })
	ss.serveMetrics(ctx)

	fmt.Fprintf(e.stdout, "%s: ready on %s (addresses %s)\n", prefix, ss.srv.Path(), strings.Join(ss.info.Addresses, " "))
	if err := ss.serve(ctx); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	fmt.Fprintf(e.stdout, "%s: stopped\n", prefix)
	return nil
}

// listenControl takes the name and its socket; a name in use is a usage
// error.
func listenControl(name string, logf func(string, ...any)) (*control.Server, error) {
	srv, err := control.Listen(name, logf)
	var taken *control.NameTakenError
	if errors.As(err, &taken) {
		return nil, usagef("--name: %v", err)
	}
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// connect dials r.Host through the stack and splices the raw streams.
func (d *stackAPI) connect(w http.ResponseWriter, r *http.Request) {
	target, err := d.st.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		target.Close()
		http.Error(w, "connection cannot be taken over", http.StatusInternalServerError)
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		target.Close()
		return
	}
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		target.Close()
		return
	}
	if !d.track(client, target) {
		return
	}
	go d.splice(client, brw.Reader, target)
}

// track registers a tunnel; false (and both closed) if the daemon is
// already shutting down.
func (d *stackAPI) track(conns ...net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		d.conns[c] = struct{}{}
	}
	return true
}

func (d *stackAPI) closeTunnels() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways; each direction's end is passed on as a
// half-close, so request-then-response protocols work.
func (d *stackAPI) splice(client net.Conn, clientBuf io.Reader, target net.Conn) {
	var wg sync.WaitGroup
	pipe := func(dst net.Conn, src io.Reader) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go pipe(target, clientBuf)
	go pipe(client, target)
	wg.Wait()
	client.Close()
	target.Close()
	d.mu.Lock()
	if d.conns != nil {
		delete(d.conns, client)
		delete(d.conns, target)
	}
	d.mu.Unlock()
}

// ping runs a ping on the daemon's stack and streams its lines.
func (d *stackAPI) ping(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	o := defaultPingOptions()
	host := q.Get("host")
	if host == "" {
		http.Error(w, "ping: missing host (use /v1/ping?host=H)", http.StatusBadRequest)
		return
	}
	for _, p := range []struct {
		key string
		set setter
	}{
		{"count", intValue{p: &o.count, min: 0, max: math.MaxInt32, what: "a number of requests"}},
		{"interval", durationValue{p: &o.interval, min: time.Millisecond}},
		{"timeout", durationValue{p: &o.timeout, min: time.Millisecond}},
		{"size", intValue{p: &o.size, min: 0, max: maxPingSize, what: "a payload size"}},
	} {
		if v := q.Get(p.key); v != "" {
			if err := p.set.Set(v); err != nil {
				http.Error(w, fmt.Sprintf("ping: %s: %v", p.key, err), http.StatusBadRequest)
				return
			}
		}
	}
	// Resolved before the answer starts, so that a bad host is an error
	// status the client reports, not a line in the output.
	dst, err := resolveHost(r.Context(), d.st, host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Trailer", pingReceivedTrailer)
	w.WriteHeader(http.StatusOK)
	stats, err := ping(r.Context(), d.st, host, dst, o, &flushWriter{w: w})
	if err != nil {
		fmt.Fprintf(w, "ustack: %v\n", err)
	}
	w.Header().Set(pingReceivedTrailer, strconv.Itoa(stats.received))
}

type setter interface{ Set(string) error }

// flushWriter sends each line as soon as it is written.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
