package serve

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/mutate"
)

// serveMutate answers GET /v1/mutate.
func (s *Stack) serveMutate(w http.ResponseWriter, r *http.Request) {
	control.WriteJSON(w, s.mutateReply())
}

// serveSetMutate answers POST /v1/mutate: it puts the rules in force in
// place of those before and answers with them.
func (s *Stack) serveSetMutate(w http.ResponseWriter, r *http.Request) {
	var req api.MutateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("the body is not a mutate request (JSON with rules, a list of rule texts): %v", err), http.StatusBadRequest)
		return
	}
	rules := make([]mutate.Rule, 0, len(req.Rules))
	for i, text := range req.Rules {
		rule, err := mutate.Parse(text)
		if err != nil {
			http.Error(w, fmt.Sprintf("rule %d: %v", i+1, err), http.StatusBadRequest)
			return
		}
		rules = append(rules, rule)
	}
	if err := s.st.SetMutate(rules); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	what := make([]string, len(rules))
	for i, r := range rules {
		what[i] = r.String()
	}
	if len(what) == 0 {
		what = []string{"none"}
	}
	s.logf("mutate eth0: %s", strings.Join(what, "; "))
	control.WriteJSON(w, s.mutateReply())
}

func (s *Stack) mutateReply() api.MutateReply {
	st := s.st.MutateStats()
	reply := api.MutateReply{Name: s.srv.Name(), Dev: "eth0", Rules: []api.MutateRule{}, Malformed: st.Malformed}
	for _, r := range st.Rules {
		reply.Rules = append(reply.Rules, api.MutateRule{Rule: r.Rule, Matched: r.Matched, Acted: r.Acted, Injected: r.Injected})
	}
	return reply
}
