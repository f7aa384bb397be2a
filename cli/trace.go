package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/observe"
)

// stopGrace is how long trace waits for the stack to write the end record
// after asking it to stop.
const stopGrace = 5 * time.Second

func traceCommand() *command {
	c := &command{name: "trace", args: "[NAME]", summary: "record a running stack's TCP control blocks and segments as JSON lines"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var filter, output string
		var duration time.Duration
		s.add(&option{names: []string{"filter"}, arg: "ADDR:PORT", value: stringValue{&filter},
			help: "only connections with an end at ADDR:PORT (ADDR or :PORT alone match any port or address)"})
		s.add(&option{names: []string{"o", "output"}, arg: "FILE", value: stringValue{&output},
			help: "write the trace to FILE (- for stdout; required)"})
		s.add(&option{names: []string{"duration"}, arg: "D", value: durationValue{p: &duration, min: time.Millisecond},
			help: "stop after D (e.g. 10s); default: until SIGINT or SIGTERM"})
		return s, func(ctx context.Context, e *env, args []string) error {
			f, err := observe.ParseFilter(filter)
			if err != nil {
				return usagef("--filter: %v", err)
			}
			if output == "" {
				return usagef("trace: missing -o FILE (where to write the trace; - for stdout)")
			}
			if len(args) > 1 {
				return usagef("trace: unexpected argument %q (usage: ustack trace [flags] [NAME] -o FILE)", args[1])
			}
			client, err := pickStack(ctx, c.name, args)
			if err != nil {
				return err
			}
			return runTrace(ctx, e, client, f, duration, output)
		}
	}
	return c
}

// openOutput opens FILE for -o/-w, or stdout for "-".
func openOutput(flag, path string, e *env) (io.Writer, func() error, error) {
	if path == "-" {
		return e.stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, usagef("%s: %v", flag, err)
	}
	return f, f.Close, nil
}

// streamRequest starts a streaming GET on the stack. Its context is not
// the command's: the stream must outlive a Ctrl-C long enough to end well.
func streamRequest(cmd string, c *control.Client, path string) (*http.Response, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := c.Stream(ctx, path)
	if err != nil {
		cancel()
		var nr *control.NotRunningError
		if errors.As(err, &nr) {
			return nil, nil, fmt.Errorf("%s: no stack named %s is running (see: ustack ls)", cmd, c.Name)
		}
		var se *control.StatusError
		if errors.As(err, &se) && (se.Code == http.StatusBadRequest || se.Code == http.StatusNotFound) {
			return nil, nil, usagef("%s: %v", cmd, err)
		}
		return nil, nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return resp, cancel, nil
}

func runTrace(ctx context.Context, e *env, c *control.Client, f observe.Filter, duration time.Duration, output string) error {
	q := url.Values{}
	if f != (observe.Filter{}) {
		q.Set("filter", f.String())
	}
	if duration > 0 {
		q.Set("duration", duration.String())
	}
	path := "/v1/trace"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	out, closeOut, err := openOutput("-o", output, e)
	if err != nil {
		return err
	}
	defer closeOut()
	resp, cancel, err := streamRequest("trace", c, path)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	id := resp.Header.Get(api.TraceIDHeader)

	tail := &lastLine{w: out}
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(tail, resp.Body)
		copied <- err
	}()
	select {
	case err = <-copied:
	case <-ctx.Done():
		// Ask the stack to end the trace; it writes the end record and
		// closes the stream.
		stopCtx, stopCancel := context.WithTimeout(context.Background(), stopGrace)
		stopErr := postStop(stopCtx, c, id)
		stopCancel()
		if stopErr != nil {
			cancel()
		}
		select {
		case err = <-copied:
		case <-time.After(stopGrace):
			cancel()
			err = <-copied
		}
	}
	var end api.EndRecord
	if jerr := json.Unmarshal(tail.last(), &end); jerr != nil || end.Kind != "end" {
		if err != nil {
			return fmt.Errorf("trace: the stream from %s broke off: %w", c.Name, err)
		}
		return fmt.Errorf("trace: the stream from %s ended without its end record (did the stack stop?)", c.Name)
	}
	if err := closeOut(); err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	rules := ""
	if end.Rules > 0 {
		rules = fmt.Sprintf(", %d filter verdicts", end.Rules)
	}
	fmt.Fprintf(e.stderr, "ustack trace: %d control-block samples, %d packets%s, %d dropped in %.1fs\n", end.Samples, end.Packets, rules, end.Dropped, end.T)
	return nil
}

func postStop(ctx context.Context, c *control.Client, id string) error {
	if err := c.Post(ctx, "/v1/trace/stop?id="+url.QueryEscape(id), http.StatusNoContent); err != nil {
		return fmt.Errorf("stopping the trace: %w", err)
	}
	return nil
}

// lastLine passes writes on and keeps the last complete line.
type lastLine struct {
	w    io.Writer
	buf  []byte // the tail of the stream, from the start of its last line
	prev []byte // the last complete line
}

func (l *lastLine) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	l.buf = append(l.buf, p[:n]...)
	if i := bytes.LastIndexByte(l.buf, '\n'); i >= 0 {
		j := bytes.LastIndexByte(l.buf[:i], '\n')
		l.prev = append(l.prev[:0], l.buf[j+1:i]...)
		l.buf = append(l.buf[:0], l.buf[i+1:]...)
	}
	return n, err
}

func (l *lastLine) last() []byte { return l.prev }

func captureCommand() *command {
	c := &command{name: "capture", args: "[NAME]", summary: "capture a running stack's frames live, as pcap"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var nic, output string
		var snaplen int
		s.add(&option{names: []string{"i", "interface"}, arg: "NIC", value: stringValue{&nic},
			help: "the NIC to capture (default eth0, the attachment's)"})
		s.add(&option{names: []string{"w", "write"}, arg: "FILE", value: stringValue{&output},
			help: "write the pcap to FILE, or to stdout with - (e.g. | tcpdump -r -); required"})
		s.add(&option{names: []string{"s", "snaplen"}, arg: "N", value: intValue{p: &snaplen, min: 64, max: 262144, what: "a snapshot length in bytes"},
			help: "record at most N bytes of each frame (default 262144, whole frames)"})
		return s, func(ctx context.Context, e *env, args []string) error {
			if output == "" {
				return usagef("capture: missing -w FILE (where to write the pcap; - for stdout)")
			}
			if len(args) > 1 {
				return usagef("capture: unexpected argument %q (usage: ustack capture [flags] [NAME] -w FILE)", args[1])
			}
			client, err := pickStack(ctx, c.name, args)
			if err != nil {
				return err
			}
			return runCapture(ctx, e, client, nic, snaplen, output)
		}
	}
	return c
}

func runCapture(ctx context.Context, e *env, c *control.Client, nic string, snaplen int, output string) error {
	q := url.Values{}
	if nic != "" {
		q.Set("nic", nic)
	}
	if snaplen > 0 {
		q.Set("snaplen", strconv.Itoa(snaplen))
	}
	path := "/v1/capture"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	// A reader that goes away (tcpdump -c N) must end the capture with an
	// error from write, not kill ustack with SIGPIPE.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)

	out, closeOut, err := openOutput("-w", output, e)
	if err != nil {
		return err
	}
	defer closeOut()
	resp, cancel, err := streamRequest("capture", c, path)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	readerGone := watchPipe(out, cancel)
	defer readerGone.stop()
	pw := &pcapRecords{w: out}
	_, err = io.Copy(pw, resp.Body)
	switch {
	case errors.Is(err, syscall.EPIPE), readerGone.fired.Load():
		err = nil // the reader has what it wanted
	case ctx.Err() != nil:
		err = nil // SIGINT or SIGTERM: the normal way to stop
	case err == nil:
		err = fmt.Errorf("capture: %s ended the capture (did the stack stop?)", c.Name)
	case pw.writeErr != nil:
		err = fmt.Errorf("-w: %w", pw.writeErr)
	default:
		err = fmt.Errorf("capture: the stream from %s broke off: %w", c.Name, err)
	}
	if cerr := closeOut(); err == nil && cerr != nil {
		err = fmt.Errorf("-w: %w", cerr)
	}
	if output != "-" || err != nil {
		fmt.Fprintf(e.stderr, "ustack capture: %d frames\n", pw.records)
	}
	return err
}

// pipeWatch notices that the reader of a pipe went away while nothing is
// written to it (a quiet stack would otherwise keep capture running until
// its next frame meets EPIPE).
type pipeWatch struct {
	fired atomic.Bool
	done  chan struct{}
	once  sync.Once
}

func (p *pipeWatch) stop() { p.once.Do(func() { close(p.done) }) }

func watchPipe(w io.Writer, cancel func()) *pipeWatch {
	p := &pipeWatch{done: make(chan struct{})}
	f, ok := w.(*os.File)
	if !ok {
		return p
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return p
	}
	fd := int(f.Fd())
	go func() {
		for {
			select {
			case <-p.done:
				return
			default:
			}
			// A pipe's write end reports POLLERR once its reader is gone.
			fds := []unix.PollFd{{Fd: int32(fd), Events: 0}}
			n, err := unix.Poll(fds, 200)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
			if n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
				p.fired.Store(true)
				cancel()
				return
			}
		}
	}()
	return p
}

// pcapRecords passes a pcap stream on in whole records only, so a capture
// cut off at any byte still leaves a file every reader accepts.
type pcapRecords struct {
	w        io.Writer
	buf      []byte
	order    binary.ByteOrder
	records  int
	writeErr error
}

func (p *pcapRecords) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	start := 0
	if p.order == nil {
		if len(p.buf) < 24 {
			return len(b), nil
		}
		switch binary.LittleEndian.Uint32(p.buf) {
		case 0xa1b2c3d4, 0xa1b23c4d:
			p.order = binary.LittleEndian
		default:
			p.order = binary.BigEndian
		}
		start = 24
	}
	end := start
	for len(p.buf)-end >= 16 {
		n := 16 + int(p.order.Uint32(p.buf[end+8:]))
		if len(p.buf)-end < n {
			break
		}
		end += n
		p.records++
	}
	if end > 0 {
		if _, err := p.w.Write(p.buf[:end]); err != nil {
			p.writeErr = err
			return 0, err
		}
		p.buf = append(p.buf[:0], p.buf[end:]...)
	}
	return len(b), nil
}
