package lab

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

const goodTopology = `name: t
topology:
  nodes:
    h1: {interfaces: {eth0: 10.0.1.10/24}, routes: [default via 10.0.1.1], cc: reno}
    r1:
      kind: router
      interfaces: {eth0: 10.0.1.1/24, eth1: 10.0.2.1/24}
      filter: [-A FORWARD -p udp -j DROP]
  links:
    - endpoints: [h1:eth0, r1:eth0]
      shape: {h1:eth0: delay 5ms, r1:eth0: rate 10mbit}
    - {type: vxlan, endpoint: r1:eth1, remote: 192.0.2.2, vni: 7, mtu: 1450}
`

// Each mistake is reported at its line, with the path of the field.
func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, old, new string
		line           int
		path, msg      string
	}{
		{"kind", "kind: router", "kind: switch", 6, "topology.nodes.r1.kind", `unknown kind "switch"`},
		{"address", "eth1: 10.0.2.1/24", "eth1: 10.0.2.1", 7, "topology.nodes.r1.interfaces.eth1[0]", "not an address with prefix length"},
		{"route", "default via 10.0.1.1", "default via 10.9.9.9", 4, "topology.nodes.h1.routes[0]", "on none of h1's subnets"},
		{"cc", "cc: reno", "cc: nosuch", 4, "topology.nodes.h1.cc", `unknown congestion control "nosuch"`},
		{"rule", "-j DROP", "-j BOUNCE", 8, "topology.nodes.r1.filter[0]", "BOUNCE"},
		{"endpoint", "[h1:eth0, r1:eth0]", "[h1:eth0, r2:eth0]", 10, "topology.links[0].endpoints[1]", "there is no node r2"},
		{"shape", "delay 5ms", "delay 5 parsecs", 11, "topology.links[0].shape.h1:eth0", ""},
		{"shape end", "r1:eth0: rate", "r1:eth1: rate", 11, "topology.links[0].shape.r1:eth1", "not an end of this link"},
		{"vni", "vni: 7", "vni: 0", 12, "topology.links[1].vni", "out of range"},
		{"vxlan field", "vni: 7", "vni: 7, endpoints: []", 12, "topology.links[1].endpoints", "not a field of a vxlan link"},
		{"unknown field", "cc: reno}", "cc: reno, colour: red}", 4, "topology.nodes.h1.colour", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := strings.Replace(goodTopology, c.old, c.new, 1)
			if text == goodTopology {
				t.Fatalf("%q is not in the topology", c.old)
			}
			_, err := Parse("lab.yaml", []byte(text), "")
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("error %v, want a *lab.Error", err)
			}
			if le.File != "lab.yaml" || le.Line != c.line || le.Path != c.path || !strings.Contains(le.Msg, c.msg) {
				t.Errorf("got %v; want lab.yaml:%d: %s: ...%s...", err, c.line, c.path, c.msg)
			}
		})
	}
}

// The drawing has every node, every interface's addresses, each link's
// MTU and shapes, and the VXLAN link's far end.
func TestDOT(t *testing.T) {
	topo, err := Parse("lab.yaml", []byte(goodTopology), "")
	if err != nil {
		t.Fatal(err)
	}
	dot := string(DOT(topo.Status()))
	for _, want := range []string{
		`graph "lab t" {`,
		`<b>h1</b> host`, `cc reno`, `default via 10.0.1.1`, `-A FORWARD -p udp -j DROP`,
		`port="eth1"`, `eth1 10.0.2.1/24`,
		`"h1":"eth0" -- "r1":"eth0" [label="mtu 1500\n→ delay 5ms\n← rate 10mbit"]`,
		`"r1":"eth1" -- "vxlan:192.0.2.2 vni 7 port 4789" [label="mtu 1450", style=dashed]`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("the DOT lacks %s:\n%s", want, dot)
		}
	}
}

// A link's mutator rules are a mapping from an end to a rule or a list of
// rules; mistakes name the line and the field.
func TestParseMutate(t *testing.T) {
	const text = `name: m
topology:
  nodes:
    h1: {interfaces: {eth0: 10.0.1.10/24}}
    h2: {interfaces: {eth0: 10.0.1.20/24}}
  links:
    - endpoints: [h1:eth0, h2:eth0]
      mutate: {h2:eth0: [ack-division=4, in icmp drop], h1:eth0: drop udp}
`
	topo, err := Parse("lab.yaml", []byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	var got [2][]string
	for i, rules := range topo.Links[0].Mutate {
		for _, r := range rules {
			got[i] = append(got[i], r.String())
		}
	}
	if want := [2][]string{{"udp drop"}, {"ack-division=4", "in icmp drop"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules %q, want %q", got, want)
	}
	for _, c := range []struct {
		name, new string
		path, msg string
	}{
		{"not a mapping", "mutate: drop udp", "topology.links[0].mutate", "want a mapping"},
		{"not an end", "mutate: {h3:eth0: drop}", "topology.links[0].mutate.h3:eth0", "not an end of this link"},
		{"bad rule", "mutate: {h1:eth0: [drop, bounce]}", "topology.links[0].mutate.h1:eth0[1]", "bounce"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(text, "mutate: {h2:eth0: [ack-division=4, in icmp drop], h1:eth0: drop udp}", c.new, 1)
			_, err := Parse("lab.yaml", []byte(bad), "")
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("error %v, want a *lab.Error", err)
			}
			if le.Line != 8 || le.Path != c.path || !strings.Contains(le.Msg, c.msg) {
				t.Errorf("got %v; want lab.yaml:8: %s: ...%s...", err, c.path, c.msg)
			}
		})
	}
}

// A pcap link names its capture relative to the lab file; mistakes name
// the line and the field, and a file that is missing or no capture stops
// the parse.
func TestParsePcapLink(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "in.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pcapgo.NewWriter(f).WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a capture\n"), 0o644)
	const text = `name: p
topology:
  nodes:
    r1: {kind: router, interfaces: {eth0: 10.1.0.1/24}}
  links:
    - type: pcap
      endpoint: r1:eth0
      file: in.pcap
      out: out.pcap
      speed: max
`
	file := filepath.Join(dir, "lab.yaml")
	topo, err := Parse(file, []byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	want := PcapLink{File: "in.pcap", Path: filepath.Join(dir, "in.pcap"), Out: "out.pcap", OutPath: filepath.Join(dir, "out.pcap")}
	if l := topo.Links[0]; l.Pcap == nil || *l.Pcap != want || l.Ends[0] != (Endpoint{"r1", "eth0"}) {
		t.Errorf("link %+v (pcap %+v), want r1:eth0 and %+v", l, l.Pcap, want)
	}
	if peer := topo.Status().Nodes[0].Interfaces[0].Peer; peer != "pcap:in.pcap" {
		t.Errorf("r1:eth0's peer is %q, want pcap:in.pcap", peer)
	}
	dot := string(DOT(topo.Status()))
	if want := `"r1":"eth0" -- "pcap link 0" [label="mtu 1500", style=dashed]`; !strings.Contains(dot, want) || !strings.Contains(dot, `replays in.pcap\nspeed max\nrecords to out.pcap", shape=note`) {
		t.Errorf("the DOT lacks the pcap link's note and edge:\n%s", dot)
	}
	for _, c := range []struct {
		name, old, new string
		line           int
		path, msg      string
		more           string // links added at the end
	}{
		{"missing file", "      file: in.pcap\n", "", 6, "topology.links[0]", "missing file", ""},
		{"no such file", "file: in.pcap", "file: nosuch.pcap", 8, "topology.links[0].file", "nosuch.pcap: no such file", ""},
		{"not a pcap", "file: in.pcap", "file: notes.txt", 8, "topology.links[0].file", "not a pcap file", ""},
		{"bad speed", "speed: max", "speed: fast", 10, "topology.links[0].speed", `"fast" is not a speed`, ""},
		{"zero speed", "speed: max", "speed: 0", 10, "topology.links[0].speed", `"0" is not a speed`, ""},
		{"bad mac", "speed: max", "mac: rewrite", 10, "topology.links[0].mac", `"rewrite": the only value is keep`, ""},
		{"vxlan field", "speed: max", "vni: 7", 10, "topology.links[0].vni", "not a field of a pcap link", ""},
		{"unknown field", "speed: max", "colour: red", 10, "topology.links[0].colour", "", ""},
		{"pcap field on veth", "speed: max", "speed: max\n    - {endpoints: [r1:eth0, r1:eth1], file: in.pcap}", 11, "topology.links[1].file", "not a field of a veth link", ""},
		{"missing endpoint", "      endpoint: r1:eth0\n", "", 6, "topology.links[0]", "missing endpoint", ""},
		{"out is in", "out: out.pcap", "out: ./in.pcap", 9, "topology.links[0].out", "is the capture being replayed", ""},
		{"shape end", "speed: max", "shape: {pcap:in.pcap: delay 5ms, r1:eth9: delay 1ms}", 10, "topology.links[0].shape.r1:eth9", "its ends: r1:eth0, pcap:in.pcap", ""},
		{"out twice", "interfaces: {eth0: 10.1.0.1/24}}", "interfaces: {eth0: 10.1.0.1/24, eth1: 10.2.0.1/24}}",
			11, "topology.links[1].out", "out.pcap is topology.links[0].out already",
			"    - {type: pcap, endpoint: r1:eth1, file: in.pcap, out: out.pcap}\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(text, c.old, c.new, 1)
			if bad == text {
				t.Fatalf("%q is not in the topology", c.old)
			}
			bad += c.more
			_, err := Parse(file, []byte(bad), "")
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("error %v, want a *lab.Error", err)
			}
			if le.Line != c.line || le.Path != c.path || !strings.Contains(le.Msg, c.msg) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v; want one line, lab.yaml:%d: %s: ...%s...", err, c.line, c.path, c.msg)
			}
		})
	}
}
