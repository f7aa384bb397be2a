package serve

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
)

// serveSysctl answers GET /v1/sysctl.
func (s *Stack) serveSysctl(w http.ResponseWriter, r *http.Request) {
	reply := api.SysctlReply{Name: s.srv.Name(), Settings: []api.SysctlSetting{}}
	for _, st := range s.st.Sysctl() {
		reply.Settings = append(reply.Settings, sysctlSetting(st))
	}
	control.WriteJSON(w, reply)
}

// serveSetSysctl answers POST /v1/sysctl: each KEY=VALUE is made on the
// running stack in turn; the answer lists them as now in force.
func (s *Stack) serveSetSysctl(w http.ResponseWriter, r *http.Request) {
	var req api.SysctlRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("the body is not a sysctl request (JSON with set, a list of KEY=VALUE): %v", err), http.StatusBadRequest)
		return
	}
	reply := api.SysctlReply{Name: s.srv.Name(), Settings: []api.SysctlSetting{}}
	for _, kv := range req.Set {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			http.Error(w, fmt.Sprintf("%q: want KEY=VALUE, e.g. tcp.sack=0", kv), http.StatusBadRequest)
			return
		}
		st, err := s.st.SetSysctl(strings.TrimSpace(key), value)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.logf("sysctl %s=%s (%s)", st.Key, st.Value, st.Applies)
		reply.Settings = append(reply.Settings, sysctlSetting(st))
	}
	control.WriteJSON(w, reply)
}

func sysctlSetting(st ustack.SysctlSetting) api.SysctlSetting {
	return api.SysctlSetting{Key: st.Key, Value: st.Value, Applies: st.Applies, Help: st.Help}
}
