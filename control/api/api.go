// Package api holds the wire types of ustack's control API
// (docs/control-api.md): the JSON of every answer, the parameters of the
// requests that have them, the records of the streamed endpoints and the
// names of their headers and trailers. The stacks that serve the API and
// the commands that read it both use these types, so the two cannot drift
// apart. It depends on the standard library only.
package api

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"time"
)

// Info is the answer to GET /v1/info.
type Info struct {
	Name       string   `json:"name"`
	PID        int      `json:"pid"`
	Command    string   `json:"command"` // "daemon" or "run"
	Attachment string   `json:"attachment"`
	Addresses  []string `json:"addresses"`
	MTU        int      `json:"mtu"`
	Socket     string   `json:"socket"`
	Version    string   `json:"version"`
	// Connections counts the stack's TCP connections that are neither
	// listening nor closed (what ss shows without -a).
	Connections int `json:"connections"`
}

// Runtime is the answer to GET /v1/runtime: what a daemon holds, so that
// tests and users can see that programs which came and went left nothing
// behind.
type Runtime struct {
	Goroutines int    `json:"goroutines"`
	FDs        int    `json:"fds"`
	Endpoints  int    `json:"endpoints"` // netstack transport endpoints
	Sockets    int    `json:"sockets"`   // program sockets being served
	Attached   int    `json:"attached"`  // program trees being served
	HeapBytes  uint64 `json:"heap_bytes"`
}

// The attach protocol (POST /v1/attach): after the 200 answer the client
// sends one byte carrying the program's seccomp listener (SCM_RIGHTS), and
// the daemon answers one line, AttachOK or AttachError followed by the
// reason. After AttachOK the daemon keeps the connection open while it
// serves the program, and says AttachDone before it closes it once the
// program and all it forked have exited; a connection that ends without
// it means the daemon stopped serving the program while it ran.
const (
	AttachPath  = "/v1/attach"
	AttachOK    = "ok"
	AttachError = "error "
	AttachDone  = "done"
)

// PingRequest is the query of GET /v1/ping: ping Host from the stack.
type PingRequest struct {
	Host     string
	Count    int           // requests; 0 sends until the client goes away
	Interval time.Duration // between requests
	Timeout  time.Duration // how long to wait for replies after the last request
	Size     int           // payload bytes
}

// PingReceivedTrailer is the trailer of GET /v1/ping that holds the number
// of replies received.
const PingReceivedTrailer = "Ustack-Ping-Received"

// Path is the request's path with its query.
func (r PingRequest) Path() string {
	q := url.Values{}
	q.Set("host", r.Host)
	q.Set("count", strconv.Itoa(r.Count))
	q.Set("interval", r.Interval.String())
	q.Set("timeout", r.Timeout.String())
	q.Set("size", strconv.Itoa(r.Size))
	return "/v1/ping?" + q.Encode()
}

// SetQuery sets Host and every field whose parameter q holds; the others
// keep their values, so r may start out as the defaults. An error names
// the parameter. It checks the form of the values, not their range.
func (r *PingRequest) SetQuery(q url.Values) error {
	r.Host = q.Get("host")
	for _, p := range []struct {
		key string
		int *int
		dur *time.Duration
	}{
		{key: "count", int: &r.Count},
		{key: "interval", dur: &r.Interval},
		{key: "timeout", dur: &r.Timeout},
		{key: "size", int: &r.Size},
	} {
		v := q.Get(p.key)
		if v == "" {
			continue
		}
		if p.int != nil {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s: %q is not a whole number", p.key, v)
			}
			*p.int = n
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			// Plain seconds, as ping(8) and ustack ping take them.
			f, ferr := strconv.ParseFloat(v, 64)
			// Beyond what a Duration holds the conversion below would
			// wrap around to nonsense.
			if ferr != nil || math.IsNaN(f) || math.Abs(f) >= math.MaxInt64/float64(time.Second) {
				return fmt.Errorf("%s: %q is not a duration (use seconds like 0.2, or 200ms, 1s)", p.key, v)
			}
			d = time.Duration(f * float64(time.Second))
		}
		*p.dur = d
	}
	return nil
}

// Subscribers is the answer to GET /v1/subscribers: how many readers the
// frames of each NIC and the TCP probe's samples have, that is how many
// live captures (frames) and traces (both) are being served. A client
// that starts one waits for its count to go up before making the traffic
// it wants to see.
type Subscribers struct {
	NICs     map[string]int `json:"nics"`
	TCPProbe int            `json:"tcp_probe"`
	// Rules are the readers of the packet filter's verdicts (traces of a
	// stack with filter rules).
	Rules int `json:"rules,omitempty"`
}
