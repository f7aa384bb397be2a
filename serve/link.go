package serve

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/shape"
)

// LinkDev is a NIC with an emulated link: the stack's own attachment NIC,
// or each interface of a lab's node (Config.Links).
type LinkDev interface {
	SetLink(d shape.Direction, spec shape.Spec) error
	LinkStats(d shape.Direction) shape.Stats
}

var _ LinkDev = (*ustack.Stack)(nil)

// linkDevs are the NICs whose links GET and POST /v1/link reach, by name.
func (s *Stack) linkDevs() map[string]LinkDev {
	if s.links != nil {
		return s.links
	}
	return map[string]LinkDev{"eth0": s.st}
}

// serveLinks answers GET /v1/link[?dev=DEV].
func (s *Stack) serveLinks(w http.ResponseWriter, r *http.Request) {
	devs := s.linkDevs()
	names := sortedDevs(devs)
	if dev := r.URL.Query().Get("dev"); dev != "" {
		if devs[dev] == nil {
			http.Error(w, unknownDev(dev, names), http.StatusNotFound)
			return
		}
		names = []string{dev}
	}
	reply := api.LinkReply{Name: s.srv.Name(), Links: []api.Link{}}
	for _, dev := range names {
		reply.Links = append(reply.Links, linkOf(dev, devs[dev]))
	}
	control.WriteJSON(w, reply)
}

// serveSetLink answers POST /v1/link: it puts the spec in force and
// answers with the link as it is then.
func (s *Stack) serveSetLink(w http.ResponseWriter, r *http.Request) {
	var req api.LinkRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("the body is not a link request (JSON with dev, direction, spec): %v", err), http.StatusBadRequest)
		return
	}
	devs := s.linkDevs()
	if req.Dev == "" {
		req.Dev = "eth0"
	}
	nic := devs[req.Dev]
	if nic == nil {
		http.Error(w, unknownDev(req.Dev, sortedDevs(devs)), http.StatusNotFound)
		return
	}
	var dirs []shape.Direction
	switch req.Direction {
	case "", "both":
		dirs = []shape.Direction{shape.Egress, shape.Ingress}
	case "egress":
		dirs = []shape.Direction{shape.Egress}
	case "ingress":
		dirs = []shape.Direction{shape.Ingress}
	default:
		http.Error(w, fmt.Sprintf("direction: %q is not egress, ingress or both", req.Direction), http.StatusBadRequest)
		return
	}
	spec, err := shape.Parse(req.Spec)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, d := range dirs {
		if err := nic.SetLink(d, spec); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	what := strings.TrimSpace(spec.String())
	if what == "" {
		what = "none"
	}
	s.logf("link %s %s: %s", req.Dev, directionName(req.Direction), what)
	control.WriteJSON(w, api.LinkReply{Name: s.srv.Name(), Links: []api.Link{linkOf(req.Dev, nic)}})
}

func directionName(d string) string {
	if d == "" {
		return "both"
	}
	return d
}

func linkOf(dev string, nic LinkDev) api.Link {
	return api.Link{Dev: dev, Egress: directionOf(nic.LinkStats(shape.Egress)), Ingress: directionOf(nic.LinkStats(shape.Ingress))}
}

func directionOf(st shape.Stats) api.LinkDirection {
	return api.LinkDirection{
		Spec: st.Spec.String(), Seed: st.Seed,
		SentPackets: st.SentPackets, SentBytes: st.SentBytes,
		DroppedLoss: st.DroppedLoss, DroppedQueue: st.DroppedQueue, DroppedAQM: st.DroppedAQM,
		Duplicated: st.Duplicated, Corrupted: st.Corrupted, Reordered: st.Reordered, Errors: st.Errors,
		QueuePackets: st.QueuePackets, QueueBytes: st.QueueBytes,
		InFlightPackets: st.InFlightPackets, InFlightBytes: st.InFlightBytes,
	}
}

func sortedDevs(devs map[string]LinkDev) []string {
	names := make([]string, 0, len(devs))
	for n := range devs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func unknownDev(dev string, names []string) string {
	return fmt.Sprintf("dev: no NIC %q with a link on this stack (NICs: %s)", dev, strings.Join(names, ", "))
}
