package api

import (
	"sort"
	"strings"
)

// StatsReply is the answer to GET /v1/stats.
type StatsReply struct {
	Name     string    `json:"name"`
	Counters []Counter `json:"counters"`
}

// Counter is one counter of the stack, as GET /v1/stats reports it.
type Counter struct {
	// Name is nstat's style: the path of the field in netstack's
	// tcpip.Stats in CamelCase, e.g. TcpRetransmits, IpMalformedPacketsReceived.
	Name string `json:"name"`
	// Metric is the Prometheus name, e.g. ustack_tcp_retransmits_total.
	Metric string `json:"metric"`
	// Labels tell apart counters of one name: nic, protocol.
	Labels map[string]string `json:"labels,omitempty"`
	Value  uint64            `json:"value"`
	// Gauge is true for values that go down as well as up
	// (TcpCurrentEstablished).
	Gauge bool `json:"gauge,omitempty"`
	// Source is the Go path of the field, for its documentation.
	Source string `json:"source"`
}

// Key is the counter's name with its labels, as stats prints it:
// NicRxPackets{nic=eth0}.
func (c Counter) Key() string {
	if len(c.Labels) == 0 {
		return c.Name
	}
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(c.Name + "{")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + c.Labels[k])
	}
	b.WriteByte('}')
	return b.String()
}
