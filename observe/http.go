package observe

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/link"
)

// defaultCaptureQueueLen is how many frames a capture holds for a slow
// reader before it drops them.
const defaultCaptureQueueLen = 8192

// Server serves a stack's traces and live captures over HTTP:
//
//	GET  /v1/trace?filter=ADDR:PORT&duration=D   trace records (JSON lines) until stopped
//	POST /v1/trace/stop?id=N                     end trace N (its end record is written)
//	GET  /v1/capture?nic=NAME&snaplen=N          pcap stream until the reader goes away
//	GET  /v1/subscribers                         readers of each NIC's frames, of the TCP probe and of the filter's verdicts
//
// A trace stops when its duration is over, when it is stopped, or when the
// reader goes away; only the first two write the end record.
type Server struct {
	Name    string
	Hub     *Hub
	Mirrors map[string]*Mirror // by NIC name
	// Rules, if not nil, is the packet filter's verdicts, which traces
	// record too.
	Rules *RuleFeed
	Logf  func(format string, args ...any)

	mu     sync.Mutex
	next   int
	traces map[int]context.CancelFunc
}

// Mount serves the endpoints on mux (a control.Server or an
// http.ServeMux).
func (s *Server) Mount(mux interface{ Handle(string, http.Handler) }) {
	for _, p := range []string{"GET /v1/trace", "POST /v1/trace/stop", "GET /v1/capture", "GET /v1/subscribers"} {
		mux.Handle(p, s)
	}
}

// ServeHTTP implements http.Handler for the paths of Routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/trace":
		s.trace(w, r)
	case "/v1/trace/stop":
		s.stopTrace(w, r)
	case "/v1/capture":
		s.capture(w, r)
	case "/v1/subscribers":
		s.subscribers(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	filter, err := ParseFilter(q.Get("filter"))
	if err != nil {
		http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if d := q.Get("duration"); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			http.Error(w, fmt.Sprintf("duration: %q is not a positive duration (e.g. 10s)", d), http.StatusBadRequest)
			return
		}
		// A timeout context's error is not the request's: the end record
		// is written.
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, dur)
		defer stop()
	}
	stopped, stop := context.WithCancel(ctx)
	defer stop()
	id := s.register(stop)
	defer s.unregister(id)

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set(api.TraceIDHeader, strconv.Itoa(id))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if s.Hub == nil || !s.Hub.Attached() {
		s.logf("trace %d: the stack runs without the TCP probe (tcp.probe=0): packet records only", id)
	}
	end, err := WriteTrace(stopped, w, rc.Flush, TraceConfig{Stack: s.Name, Filter: filter, Hub: s.Hub, Mirror: s.Mirrors["eth0"], Rules: s.Rules})
	switch {
	case err != nil:
		s.logf("trace %d ended: %v", id, err)
	case r.Context().Err() != nil:
		s.logf("trace %d ended: the reader went away", id)
	default:
		s.logf("trace %d: %d samples, %d packets, %d rule verdicts, %d dropped", id, end.Samples, end.Packets, end.Rules, end.Dropped)
	}
}

// stopTrace ends a running trace; the trace's own request then writes the
// end record and finishes.
func (s *Server) stopTrace(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	id, err := strconv.Atoi(r.URL.Query().Get("id"))
	s.mu.Lock()
	stop, ok := s.traces[id]
	s.mu.Unlock()
	if err != nil || !ok {
		http.Error(w, fmt.Sprintf("no running trace %q", r.URL.Query().Get("id")), http.StatusNotFound)
		return
	}
	stop()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) register(stop context.CancelFunc) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.traces == nil {
		s.traces = map[int]context.CancelFunc{}
	}
	s.next++
	s.traces[s.next] = stop
	return s.next
}

func (s *Server) unregister(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.traces, id)
}

func (s *Server) nics() string {
	var names []string
	for n := range s.Mirrors {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (s *Server) capture(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	nic := q.Get("nic")
	if nic == "" {
		nic = "eth0"
	}
	mirror, ok := s.Mirrors[nic]
	if !ok {
		http.Error(w, fmt.Sprintf("nic: no NIC %q can be captured (available: %s)", nic, s.nics()), http.StatusNotFound)
		return
	}
	snap := link.SnapLen
	if v := q.Get("snaplen"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 64 || n > link.SnapLen {
			http.Error(w, fmt.Sprintf("snaplen: %q is not a length from 64 to %d", v, link.SnapLen), http.StatusBadRequest)
			return
		}
		snap = n
	}
	sub := mirror.Subscribe(snap, defaultCaptureQueueLen)
	defer sub.Close()

	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.Header().Set("Trailer", api.CaptureDroppedTrailer+", "+api.CaptureFramesTrailer)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	pw, err := link.NewPcapWriterSnapLen(w, snap)
	if err == nil {
		err = rc.Flush()
	}
	for err == nil {
		select {
		case <-r.Context().Done():
			err = r.Context().Err()
			continue
		case f := <-sub.C():
			pw.WriteFrameAt(f.Time, f.Data, f.Len)
		}
		if len(sub.C()) == 0 {
			if err = pw.Flush(); err == nil {
				err = rc.Flush()
			}
		}
	}
	w.Header().Set(api.CaptureDroppedTrailer, strconv.FormatUint(sub.Dropped(), 10))
	if pw != nil {
		w.Header().Set(api.CaptureFramesTrailer, strconv.FormatUint(pw.Frames.Load(), 10))
		s.logf("capture on %s ended: %d frames, %d dropped", nic, pw.Frames.Load(), sub.Dropped())
	}
}

func (s *Server) subscribers(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	out := api.Subscribers{NICs: map[string]int{}, TCPProbe: s.Hub.Subscribers(), Rules: s.Rules.Subscribers()}
	for name, m := range s.Mirrors {
		out.NICs[name] = m.Subscribers()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}
