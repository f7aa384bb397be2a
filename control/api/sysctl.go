package api

// SysctlPath is the endpoint of the stack-wide TCP options: GET for all
// of them with their values, POST a SysctlRequest to change some.
const SysctlPath = "/v1/sysctl"

// SysctlRequest is the body of POST /v1/sysctl: KEY=VALUE settings, in
// the form of --sysctl, made in order; the first bad one stops there.
type SysctlRequest struct {
	Set []string `json:"set"`
}

// SysctlReply is the answer to GET /v1/sysctl (every option) and to POST
// (the options it changed).
type SysctlReply struct {
	Name     string          `json:"name"`
	Settings []SysctlSetting `json:"settings"`
}

// SysctlSetting is one option: its value in force and when a change takes
// effect: "live" (existing connections too), "new connections" (those
// made after the change) or "at start only" (not changed on a running
// stack).
type SysctlSetting struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Applies string `json:"applies"`
	Help    string `json:"help,omitempty"`
}
