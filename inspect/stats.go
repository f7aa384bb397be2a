package inspect

import (
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack/control/api"
)

// Counters walks every counter of the stack with reflection, so that a
// counter netstack adds is reported without a change here: tcpip.Stats
// (IP, ICMP, IGMP, TCP, UDP, ARP, all NICs together, DroppedPackets), each
// NIC's own counters and its network protocols' (drops by reason among
// them), and ustack's own.
func Counters(t *Target) []api.Counter {
	ns := t.Stack.Netstack()
	var out []api.Counter
	w := walker{emit: func(c api.Counter) { out = append(out, c) }}
	w.walk(reflect.ValueOf(ns.Stats()), nil, "tcpip.Stats", nil)

	nics := ns.NICInfo()
	ids := make([]int, 0, len(nics))
	for id := range nics {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	for _, id := range ids {
		info := nics[tcpip.NICID(id)]
		labels := map[string]string{"nic": info.Name}
		w.walk(reflect.ValueOf(info.Stats), []string{"Nic"}, "stack.NICInfo.Stats", labels)
		protos := make([]int, 0, len(info.NetworkStats))
		for p := range info.NetworkStats {
			protos = append(protos, int(p))
		}
		sort.Ints(protos)
		for _, p := range protos {
			w.walk(reflect.ValueOf(info.NetworkStats[tcpip.NetworkProtocolNumber(p)]), []string{"Nic", netProtoName(tcpip.NetworkProtocolNumber(p))},
				"stack.NICInfo.NetworkStats", labels)
		}
	}
	w.emit(api.Counter{Name: "UstackLinkDropped", Metric: "ustack_link_dropped_total", Value: t.Stack.Dropped(),
		Source: "ustack.Stack.Dropped: frames the in-memory link dropped on send (peer full too long, or closed)"})
	return out
}

func netProtoName(p tcpip.NetworkProtocolNumber) string {
	switch p {
	case header.IPv4ProtocolNumber:
		return "IPv4"
	case header.IPv6ProtocolNumber:
		return "IPv6"
	case header.ARPProtocolNumber:
		return "ARP"
	}
	return "Proto" + strconv.Itoa(int(p))
}

type walker struct{ emit func(api.Counter) }

var (
	statCounterType = reflect.TypeOf(tcpip.StatCounter{})
	integralMapType = reflect.TypeOf(tcpip.IntegralStatCounterMap{})
)

// walk visits v, whose field path so far is path.
func (w walker) walk(v reflect.Value, path []string, source string, labels map[string]string) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch v.Type() {
	case statCounterType:
		if v.CanAddr() {
			c := v.Addr().Interface().(*tcpip.StatCounter)
			w.emit(counter(path, source, labels, c.Value()))
		}
		return
	case integralMapType:
		if v.CanAddr() {
			m := v.Addr().Interface().(*tcpip.IntegralStatCounterMap)
			keys := m.Keys()
			sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
			for _, k := range keys {
				if c, ok := m.Get(k); ok {
					l := map[string]string{"protocol": strconv.FormatUint(k, 10)}
					for lk, lv := range labels {
						l[lk] = lv
					}
					w.emit(counter(path, source, l, c.Value()))
				}
			}
		}
		return
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		p := path
		if !f.Anonymous {
			p = append(append([]string(nil), path...), f.Name)
		}
		w.walk(v.Field(i), p, source+"."+f.Name, labels)
	}
}

func counter(path []string, source string, labels map[string]string, v uint64) api.Counter {
	var name strings.Builder
	var words []string
	for _, p := range path {
		for _, word := range splitCamel(p) {
			words = append(words, strings.ToLower(word))
			name.WriteString(strings.ToUpper(word[:1]) + strings.ToLower(word[1:]))
		}
	}
	gauge := strings.HasPrefix(path[len(path)-1], "Current")
	metric := "ustack_" + strings.Join(words, "_")
	if !gauge {
		metric += "_total"
	}
	return api.Counter{Name: name.String(), Metric: metric, Labels: labels, Value: v, Gauge: gauge, Source: source}
}

// splitCamel splits a Go name into words: "PacketsReceived" -> Packets,
// Received; "ICMPv4" -> ICMPv4; "UnknownL3ProtocolRcvdPacketCounts" ->
// Unknown, L3, Protocol, Rcvd, Packet, Counts.
func splitCamel(s string) []string {
	r := []rune(s)
	var words []string
	start := 0
	for i := 1; i < len(r); i++ {
		lowerToUpper := unicode.IsUpper(r[i]) && !unicode.IsUpper(r[i-1])
		acronymEnd := unicode.IsUpper(r[i]) && unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1]) &&
			r[i+1] != 'v' && !pluralEnd(r, i+1) // ICMPv4, NICs stay whole
		if lowerToUpper || acronymEnd {
			words = append(words, string(r[start:i]))
			start = i
		}
	}
	return append(words, string(r[start:]))
}

// pluralEnd reports whether r[i] is the 's' of a plural acronym (NICs).
func pluralEnd(r []rune, i int) bool {
	return r[i] == 's' && (i+1 == len(r) || unicode.IsUpper(r[i+1]))
}
