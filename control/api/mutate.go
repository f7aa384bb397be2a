package api

// MutatePath is the endpoint of the stack's packet-mutator rules: GET for
// the rules and their counters, POST a MutateRequest to replace them.
const MutatePath = "/v1/mutate"

// MutateRequest is the body of POST /v1/mutate: the rules to put in force
// on eth0, in package mutate's text form, one rule an entry; none takes
// every rule away.
type MutateRequest struct {
	Rules []string `json:"rules"`
}

// MutateReply is the answer to GET and POST /v1/mutate: the rules in force
// on the stack's NIC, in order, with their counters.
type MutateReply struct {
	Name  string       `json:"name"`
	Dev   string       `json:"dev"`
	Rules []MutateRule `json:"rules"`
	// Malformed counts frames that claimed to be IP but could not be
	// read; they passed untouched.
	Malformed uint64 `json:"malformed"`
}

// MutateRule is one rule and what it did since it was put in force.
type MutateRule struct {
	Rule     string `json:"rule"`
	Matched  uint64 `json:"matched"`  // frames its match selected
	Acted    uint64 `json:"acted"`    // frames it acted on (after prob)
	Injected uint64 `json:"injected"` // frames it added: copies, ACKs, resets
}
