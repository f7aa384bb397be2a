package lab

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/link"
	"github.com/ustack/ustack/mutate"
	"github.com/ustack/ustack/netstack"
	"github.com/ustack/ustack/shape"
)

// Topology is a lab as its file describes it, checked.
type Topology struct {
	Name  string
	File  string
	Nodes []*Node // in file order
	Links []*Link // in file order
}

// Kind is what a node does.
type Kind string

const (
	// Host is an end system: no forwarding.
	Host Kind = "host"
	// Router forwards between its interfaces by its routes and may filter.
	Router Kind = "router"
	// NAT is a router with one more interface, nat0, on a nat gateway to
	// the machine's own network (as --net nat), masquerading what leaves
	// through it: the lab's way out.
	NAT Kind = "nat"
)

// NATInterface is the name of a nat node's interface to the host.
const NATInterface = "nat0"

// Node is one host, router or nat node.
type Node struct {
	Name       string
	Kind       Kind
	Interfaces []*Interface // in file order
	Routes     []ustack.Route
	CC         string
	Sysctl     []Sysctl
	Filter     []string // rules, each checked by ParseRule
	Line       int
}

// Sysctl is one TCP option of a node (as --sysctl KEY=VALUE).
type Sysctl struct{ Key, Value string }

// Interface is one interface of a node and the link it is on.
type Interface struct {
	Name  string
	Addrs []netip.Prefix
	Link  *Link
	Line  int
}

// Endpoint names a node's interface, "node:iface".
type Endpoint struct{ Node, Iface string }

func (e Endpoint) String() string { return e.Node + ":" + e.Iface }

// Link joins two interfaces, or one interface and a VXLAN tunnel to
// another machine, or one interface and a capture replayed into it. Each
// end sends through its own shaper: Shape[i] is what frames leaving end i
// meet (for a VXLAN or pcap link, Shape[1] is what frames arriving from
// the remote end or the capture meet).
type Link struct {
	Index int
	Ends  [2]Endpoint // for VXLAN and pcap, only Ends[0]
	VXLAN *VXLAN
	Pcap  *PcapLink
	MTU   int
	Shape [2]shape.Spec
	// Mutate[i] are the packet-mutator rules at end i's interface, above
	// its shaper (package mutate; "out" rules act on what the end sends,
	// "in" rules on what it receives). A VXLAN or pcap link has them only
	// at its node's end.
	Mutate [2][]mutate.Rule
	Line   int
}

// VXLAN is the far end of a link carried in VXLAN (RFC 7348) over UDP.
type VXLAN struct {
	Remote netip.Addr
	Local  netip.Addr // the address to send from and listen on; unset: any
	VNI    uint32
	Port   uint16 // UDP port, both ends
}

func (v *VXLAN) String() string {
	return fmt.Sprintf("vxlan:%s vni %d port %d", v.Remote, v.VNI, v.Port)
}

// PcapLink is the far end of a link that is a packet file: the lab
// process replays the capture File into the interface as if its frames
// arrived on the wire, once the node is up with its addresses, and records
// what the interface sends in Out.
type PcapLink struct {
	File    string  // as written in the lab file
	Path    string  // File, relative to the lab file's directory when not absolute
	Out     string  // as written; "" for no recording
	OutPath string  // Out, resolved as Path
	Speed   float64 // 1 real time, N > 1 N times faster, 0 as fast as the node takes them
	KeepMAC bool    // leave unicast destination MACs as captured
}

func (p *PcapLink) String() string { return "pcap:" + p.File }

// remoteEnd reports whether the link's second end is not a node's
// interface here (a VXLAN tunnel or a capture).
func (l *Link) remoteEnd() bool { return l.VXLAN != nil || l.Pcap != nil }

// farName is how the link's second end is named in status, shapes and
// drawings.
func (l *Link) farName() string {
	switch {
	case l.VXLAN != nil:
		return l.VXLAN.String()
	case l.Pcap != nil:
		return l.Pcap.String()
	}
	return l.Ends[1].String()
}

// DefaultMTU is a link's MTU unless the file gives one: Ethernet's.
const DefaultMTU = 1500

// DefaultVXLANPort is IANA's VXLAN port, the one RFC 7348 names.
const DefaultVXLANPort = 4789

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// Names of labs and nodes: their control sockets are LAB.NODE, so neither
// may have a dot, and both together must stay a valid stack name.
const (
	maxLabName  = 32
	maxNodeName = 30
)

// ValidLabName reports whether name may name a lab.
func ValidLabName(name string) bool { return len(name) <= maxLabName && validName.MatchString(name) }

// NodeSocketName is the control-socket name of a lab's node: LAB.NODE. The
// commands that take a stack name also take LAB/NODE for it.
func NodeSocketName(lab, node string) string { return lab + "." + node }

// Load reads and checks the topology file at path. name, if not empty,
// overrides the file's name.
func Load(path, name string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, name)
}

// Parse reads and checks a topology file's text. file names it in errors;
// name, if not empty, overrides the name in the file, which otherwise
// defaults to the file's base name without its extension.
func Parse(file string, data []byte, name string) (*Topology, error) {
	d := &decoder{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Msg: "the file is empty (see the README's ustack lab section for the format)"}
	}
	root := doc.Content[0]
	top, err := d.mapping(root, "", "name", "topology")
	if err != nil {
		return nil, err
	}
	t := &Topology{File: file}
	var topo *yaml.Node
	for _, e := range top {
		switch e.key {
		case "name":
			if t.Name, err = d.scalar(e.value, "name"); err != nil {
				return nil, err
			}
			if !ValidLabName(t.Name) {
				return nil, d.errf(e.value, "name", "%q is not a lab name (use up to %d letters, digits, '_' or '-', starting with a letter or digit)", t.Name, maxLabName)
			}
		case "topology":
			topo = e.value
		}
	}
	if name != "" {
		t.Name = name
	}
	if t.Name == "" {
		t.Name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		t.Name = strings.TrimSuffix(t.Name, ".clab")
		if !ValidLabName(t.Name) {
			return nil, &Error{File: file, Path: "name", Msg: fmt.Sprintf("missing, and the file's name %q is not a lab name (add name: LAB)", t.Name)}
		}
	}
	if topo == nil {
		return nil, d.errf(root, "topology", "missing (give topology: with nodes: and links:)")
	}
	parts, err := d.mapping(topo, "topology", "defaults", "nodes", "links")
	if err != nil {
		return nil, err
	}
	var defaults, nodes, links *yaml.Node
	for _, e := range parts {
		switch e.key {
		case "defaults":
			defaults = e.value
		case "nodes":
			nodes = e.value
		case "links":
			links = e.value
		}
	}
	var def Node
	if defaults != nil {
		if err := d.nodeFields(&def, defaults, "topology.defaults", "kind", "cc", "sysctl"); err != nil {
			return nil, err
		}
	}
	if err := d.nodes(t, nodes, &def); err != nil {
		return nil, err
	}
	if len(t.Nodes) == 0 {
		return nil, d.errf(topo, "topology.nodes", "no nodes (give at least one)")
	}
	if err := d.links(t, links); err != nil {
		return nil, err
	}
	return t, t.check(d)
}

func (d *decoder) nodes(t *Topology, n *yaml.Node, def *Node) error {
	entries, err := d.mapping(n, "topology.nodes")
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := "topology.nodes." + e.key
		if len(e.key) > maxNodeName || !validName.MatchString(e.key) {
			return d.errf(e.keyAt, path, "%q is not a node name (use up to %d letters, digits, '_' or '-', starting with a letter or digit)", e.key, maxNodeName)
		}
		if e.key == "vxlan" {
			return d.errf(e.keyAt, path, "vxlan names the far end of VXLAN links; call the node something else")
		}
		node := &Node{Name: e.key, Kind: def.Kind, CC: def.CC, Sysctl: append([]Sysctl(nil), def.Sysctl...), Line: e.keyAt.Line}
		if node.Kind == "" {
			node.Kind = Host
		}
		if err := d.nodeFields(node, e.value, path, "kind", "interfaces", "routes", "cc", "sysctl", "filter"); err != nil {
			return err
		}
		t.Nodes = append(t.Nodes, node)
	}
	return nil
}

// nodeFields reads a node's fields (or the defaults', allowed being fewer).
func (d *decoder) nodeFields(node *Node, n *yaml.Node, path string, allowed ...string) error {
	entries, err := d.mapping(n, path, allowed...)
	if err != nil {
		return err
	}
	var routes *yaml.Node
	for _, e := range entries {
		p := join(path, e.key)
		switch e.key {
		case "kind":
			k, err := d.scalar(e.value, p)
			if err != nil {
				return err
			}
			switch Kind(k) {
			case Host, Router, NAT:
				node.Kind = Kind(k)
			default:
				return d.errf(e.value, p, "unknown kind %q (use host, router or nat)", k)
			}
		case "interfaces":
			ifcs, err := d.mapping(e.value, p)
			if err != nil {
				return err
			}
			for _, ie := range ifcs {
				ip := join(p, ie.key)
				if !ustack.ValidInterfaceName(ie.key) {
					return d.errf(ie.keyAt, ip, "%q is not an interface name (use a letter, then up to 14 letters, digits, '_' or '-', e.g. eth0)", ie.key)
				}
				ifc := &Interface{Name: ie.key, Line: ie.keyAt.Line}
				items, err := d.sequence(ie.value, ip)
				if err != nil {
					return err
				}
				for i, it := range items {
					s, err := d.scalar(it, index(ip, i))
					if err != nil {
						return err
					}
					pfx, err := netip.ParsePrefix(s)
					if err != nil || pfx.Addr().Zone() != "" {
						return d.errf(it, index(ip, i), "%q is not an address with prefix length (use e.g. 10.0.1.10/24 or fd01::10/64)", s)
					}
					if pfx.Addr().IsUnspecified() || pfx.Addr().IsMulticast() || pfx.Addr().IsLoopback() {
						return d.errf(it, index(ip, i), "%s is not a usable host address", pfx)
					}
					ifc.Addrs = append(ifc.Addrs, pfx)
				}
				node.Interfaces = append(node.Interfaces, ifc)
			}
		case "routes":
			routes = e.value
		case "cc":
			cc, err := d.scalar(e.value, p)
			if err != nil {
				return err
			}
			if err := (&netstack.TCPOptions{CongestionControl: cc}).Validate(); err != nil || cc == "" {
				return d.errf(e.value, p, "unknown congestion control %q (use reno or cubic)", cc)
			}
			node.CC = cc
		case "sysctl":
			kvs, err := d.mapping(e.value, p)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				v, err := d.scalar(kv.value, join(p, kv.key))
				if err != nil {
					return err
				}
				var probe netstack.TCPOptions
				if err := probe.Set(kv.key, v); err != nil {
					return d.errf(kv.keyAt, join(p, kv.key), "%v", err)
				}
				node.Sysctl = setSysctl(node.Sysctl, Sysctl{kv.key, v})
			}
		case "filter":
			items, err := d.sequence(e.value, p)
			if err != nil {
				return err
			}
			for i, it := range items {
				s, err := d.scalar(it, index(p, i))
				if err != nil {
					return err
				}
				if _, err := ParseRule(s); err != nil {
					return d.errf(it, index(p, i), "%v", err)
				}
				node.Filter = append(node.Filter, s)
			}
		}
	}
	// Routes are read once the interfaces are known, wherever they are in
	// the mapping.
	if routes != nil {
		p := join(path, "routes")
		items, err := d.sequence(routes, p)
		if err != nil {
			return err
		}
		for i, it := range items {
			s, err := d.scalar(it, index(p, i))
			if err != nil {
				return err
			}
			r, err := ParseRoute(s)
			if err == nil {
				err = node.checkRoute(r)
			}
			if err != nil {
				return d.errf(it, index(p, i), "%v", err)
			}
			node.Routes = append(node.Routes, r)
		}
	}
	return nil
}

func setSysctl(list []Sysctl, kv Sysctl) []Sysctl {
	for i := range list {
		if list[i].Key == kv.Key {
			list[i] = kv
			return list
		}
	}
	return append(list, kv)
}

// ParseRoute reads a route as ip route writes it: "default via 10.0.1.1",
// "10.0.3.0/24 via 10.0.2.2", "10.0.3.0/24 dev eth1", "fd03::/64 via
// fd02::1 dev eth1". A default route's family is its gateway's.
func ParseRoute(s string) (ustack.Route, error) {
	var r ustack.Route
	words := strings.Fields(s)
	if len(words) == 0 {
		return r, fmt.Errorf("empty route (write e.g. default via 10.0.1.1)")
	}
	dst := words[0]
	for i := 1; i < len(words); i += 2 {
		if i+1 >= len(words) {
			return r, fmt.Errorf("%q: %s needs a value (write e.g. 10.0.3.0/24 via 10.0.2.2 dev eth1)", s, words[i])
		}
		switch v := words[i+1]; words[i] {
		case "via":
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				return r, fmt.Errorf("%q: via %q is not an IP address", s, v)
			}
			r.Via = a.Unmap()
		case "dev":
			r.Dev = v
		default:
			return r, fmt.Errorf("%q: unknown word %q (a route is DESTINATION [via GATEWAY] [dev IFACE])", s, words[i])
		}
	}
	switch {
	case dst == "default" && r.Via.Is6():
		r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	case dst == "default":
		r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	default:
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			return r, fmt.Errorf("%q: destination %q is not a prefix (use e.g. 10.0.3.0/24, or default)", s, dst)
		}
		r.Dst = p.Masked()
	}
	if !r.Via.IsValid() && r.Dev == "" {
		return r, fmt.Errorf("%q: give a gateway (via) or an interface (dev)", s)
	}
	if r.Via.IsValid() && r.Via.Is4() != r.Dst.Addr().Is4() {
		return r, fmt.Errorf("%q: the gateway is not of the destination's family", s)
	}
	return r, nil
}

// checkRoute checks a route against the node's interfaces, as NewNode will.
func (n *Node) checkRoute(r ustack.Route) error {
	if r.Dev != "" {
		if n.iface(r.Dev) == nil && !(n.Kind == NAT && r.Dev == NATInterface) {
			return fmt.Errorf("%s: node %s has no interface %s", r, n.Name, r.Dev)
		}
		return nil
	}
	for _, ifc := range n.Interfaces {
		for _, p := range ifc.Addrs {
			if p.Masked().Contains(r.Via) {
				return nil
			}
		}
	}
	return fmt.Errorf("%s: %s is on none of %s's subnets (a gateway must be a neighbour; or add dev IFACE)", r, r.Via, n.Name)
}

func (n *Node) iface(name string) *Interface {
	for _, ifc := range n.Interfaces {
		if ifc.Name == name {
			return ifc
		}
	}
	return nil
}

func (t *Topology) node(name string) *Node {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Node returns the node called name, or nil.
func (t *Topology) Node(name string) *Node { return t.node(name) }

func (d *decoder) links(t *Topology, n *yaml.Node) error {
	items, err := d.sequence(n, "topology.links")
	if err != nil {
		return err
	}
	used := map[Endpoint]string{} // endpoint -> the path that used it
	for i, it := range items {
		path := index("topology.links", i)
		entries, err := d.mapping(it, path, "type", "endpoints", "endpoint", "mtu", "shape", "mutate", "remote", "local", "vni", "udp-port",
			"file", "out", "speed", "mac")
		if err != nil {
			return err
		}
		l := &Link{Index: i, MTU: DefaultMTU, Line: resolve(it).Line}
		fields := map[string]entry{}
		for _, e := range entries {
			fields[e.key] = e
		}
		typ := "veth"
		if e, ok := fields["type"]; ok {
			if typ, err = d.scalar(e.value, join(path, "type")); err != nil {
				return err
			}
			if typ != "veth" && typ != "vxlan" && typ != "pcap" {
				return d.errf(e.value, join(path, "type"), "unknown link type %q (use veth, the default, vxlan or pcap)", typ)
			}
		}
		// The fields of the other types are refused, not ignored.
		only := map[string][]string{"veth": {"endpoints"}, "vxlan": {"endpoint", "remote", "local", "vni", "udp-port"},
			"pcap": {"endpoint", "file", "out", "speed", "mac"}}
		for other, keys := range only {
			if other == typ {
				continue
			}
			for _, k := range keys {
				if e, ok := fields[k]; ok && !contains(only[typ], k) {
					return d.errf(e.keyAt, join(path, k), "not a field of a %s link (a %s link has %s)", typ, typ, strings.Join(only[typ], ", "))
				}
			}
		}
		endpoint := func(n *yaml.Node, p string) (Endpoint, error) {
			s, err := d.scalar(n, p)
			if err != nil {
				return Endpoint{}, err
			}
			node, ifname, ok := strings.Cut(s, ":")
			if !ok || node == "" || ifname == "" {
				return Endpoint{}, d.errf(n, p, "%q is not NODE:IFACE (e.g. r1:eth0)", s)
			}
			nd := t.node(node)
			if nd == nil {
				return Endpoint{}, d.errf(n, p, "%q: there is no node %s (nodes: %s)", s, node, t.nodeNames())
			}
			if nd.iface(ifname) == nil {
				return Endpoint{}, d.errf(n, p, "%q: node %s has no interface %s (its interfaces: %s)", s, node, ifname, nd.ifaceNames())
			}
			ep := Endpoint{node, ifname}
			if prev, ok := used[ep]; ok {
				return Endpoint{}, d.errf(n, p, "%q is already on %s (an interface is on one link)", s, prev)
			}
			used[ep] = p
			return ep, nil
		}
		switch typ {
		case "veth":
			e, ok := fields["endpoints"]
			if !ok {
				return d.errf(it, path, "missing endpoints (give two, e.g. endpoints: [\"h1:eth0\", \"r1:eth0\"])")
			}
			eps, err := d.sequence(e.value, join(path, "endpoints"))
			if err != nil {
				return err
			}
			if len(eps) != 2 {
				return d.errf(e.value, join(path, "endpoints"), "give two endpoints, found %d", len(eps))
			}
			for j := range 2 {
				if l.Ends[j], err = endpoint(eps[j], index(join(path, "endpoints"), j)); err != nil {
					return err
				}
			}
		case "vxlan":
			e, ok := fields["endpoint"]
			if !ok {
				return d.errf(it, path, "missing endpoint (the lab's end of the tunnel, e.g. endpoint: h1:eth1)")
			}
			if l.Ends[0], err = endpoint(e.value, join(path, "endpoint")); err != nil {
				return err
			}
			if l.VXLAN, err = d.vxlan(fields, path, it); err != nil {
				return err
			}
		case "pcap":
			e, ok := fields["endpoint"]
			if !ok {
				return d.errf(it, path, "missing endpoint (the interface the capture is replayed into, e.g. endpoint: r1:eth0)")
			}
			if l.Ends[0], err = endpoint(e.value, join(path, "endpoint")); err != nil {
				return err
			}
			if l.Pcap, err = d.pcap(fields, path, it); err != nil {
				return err
			}
		}
		if e, ok := fields["mtu"]; ok {
			s, err := d.scalar(e.value, join(path, "mtu"))
			if err != nil {
				return err
			}
			if l.MTU, err = strconv.Atoi(s); err != nil || l.MTU < 1280 || l.MTU > 65000 {
				return d.errf(e.value, join(path, "mtu"), "%q is not an MTU (use 1280 to 65000 bytes)", s)
			}
		}
		if e, ok := fields["shape"]; ok {
			if err := d.shape(l, e.value, join(path, "shape")); err != nil {
				return err
			}
		}
		if e, ok := fields["mutate"]; ok {
			if err := d.mutate(l, e.value, join(path, "mutate")); err != nil {
				return err
			}
		}
		t.Links = append(t.Links, l)
		for j, ep := range l.Ends {
			if j == 1 && l.remoteEnd() {
				break
			}
			t.node(ep.Node).iface(ep.Iface).Link = l
		}
	}
	return nil
}

func (d *decoder) vxlan(fields map[string]entry, path string, at *yaml.Node) (*VXLAN, error) {
	v := &VXLAN{Port: DefaultVXLANPort}
	addr := func(key string) (netip.Addr, error) {
		e := fields[key]
		s, err := d.scalar(e.value, join(path, key))
		if err != nil {
			return netip.Addr{}, err
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return netip.Addr{}, d.errf(e.value, join(path, key), "%q is not a unicast IP address (the %s machine's address)", s, map[string]string{"remote": "other", "local": "this"}[key])
		}
		return a.Unmap(), nil
	}
	number := func(key string, max uint64) (uint64, error) {
		e := fields[key]
		s, err := d.scalar(e.value, join(path, key))
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 || n > max {
			return 0, d.errf(e.value, join(path, key), "%q is out of range (use 1 to %d)", s, max)
		}
		return n, nil
	}
	if _, ok := fields["remote"]; !ok {
		return nil, d.errf(at, path, "missing remote (the address of the machine at the other end)")
	}
	var err error
	if v.Remote, err = addr("remote"); err != nil {
		return nil, err
	}
	if _, ok := fields["local"]; ok {
		if v.Local, err = addr("local"); err != nil {
			return nil, err
		}
		if v.Local.Is4() != v.Remote.Is4() {
			return nil, d.errf(fields["local"].value, join(path, "local"), "local and remote must be of one family")
		}
	}
	if _, ok := fields["vni"]; !ok {
		return nil, d.errf(at, path, "missing vni (the VXLAN network identifier both ends use, 1 to 16777215)")
	}
	n, err := number("vni", 1<<24-1)
	if err != nil {
		return nil, err
	}
	v.VNI = uint32(n)
	if _, ok := fields["udp-port"]; ok {
		n, err := number("udp-port", 65535)
		if err != nil {
			return nil, err
		}
		v.Port = uint16(n)
	}
	return v, nil
}

// pcap reads a pcap link's fields. The capture is opened here, so that a
// file that is missing or not a capture stops lab up before any node
// starts.
func (d *decoder) pcap(fields map[string]entry, path string, at *yaml.Node) (*PcapLink, error) {
	p := &PcapLink{Speed: 1}
	resolvePath := func(s string) string {
		if filepath.IsAbs(s) {
			return s
		}
		return filepath.Join(filepath.Dir(d.file), s)
	}
	e, ok := fields["file"]
	if !ok {
		return nil, d.errf(at, path, "missing file (the capture to replay into the interface, e.g. file: in.pcap)")
	}
	var err error
	if p.File, err = d.scalar(e.value, join(path, "file")); err != nil {
		return nil, err
	}
	if p.File == "" {
		return nil, d.errf(e.value, join(path, "file"), "empty (name the capture to replay, e.g. in.pcap)")
	}
	p.Path = resolvePath(p.File)
	src, err := link.OpenReplaySource(p.Path, "", link.ReplayOptions{})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, d.errf(e.value, join(path, "file"), "%s: no such file (relative paths are relative to the lab file's directory)", p.Path)
	case err != nil:
		return nil, d.errf(e.value, join(path, "file"), "%v", err)
	}
	src.Close()
	if e, ok := fields["out"]; ok {
		if p.Out, err = d.scalar(e.value, join(path, "out")); err != nil {
			return nil, err
		}
		if p.Out == "" {
			return nil, d.errf(e.value, join(path, "out"), "empty (name a file to record what the interface sends, or leave out out:)")
		}
		p.OutPath = resolvePath(p.Out)
		if p.OutPath == p.Path {
			return nil, d.errf(e.value, join(path, "out"), "is the capture being replayed (record to another file)")
		}
	}
	if e, ok := fields["speed"]; ok {
		s, err := d.scalar(e.value, join(path, "speed"))
		if err != nil {
			return nil, err
		}
		if p.Speed, err = link.ParseReplaySpeed(s); err != nil {
			return nil, d.errf(e.value, join(path, "speed"), "%q is not a speed (use realtime, the default, max or a factor such as 10)", s)
		}
	}
	if e, ok := fields["mac"]; ok {
		s, err := d.scalar(e.value, join(path, "mac"))
		if err != nil {
			return nil, err
		}
		if s != "keep" {
			return nil, d.errf(e.value, join(path, "mac"), "%q: the only value is keep (leave the captured destination MACs alone; by default unicast ones become the interface's)", s)
		}
		p.KeepMAC = true
	}
	return p, nil
}

// shape reads a link's shape: one spec for both directions, or a mapping
// from each end (as written in endpoints, a VXLAN link's remote address or
// a pcap link's pcap:FILE) to the spec of the frames leaving it.
func (d *decoder) shape(l *Link, n *yaml.Node, path string) error {
	parse := func(n *yaml.Node, p string) (shape.Spec, error) {
		s, err := d.scalar(n, p)
		if err != nil {
			return shape.Spec{}, err
		}
		spec, err := shape.Parse(s)
		if err != nil {
			return spec, d.errf(n, p, "%v", err)
		}
		return spec, nil
	}
	if resolve(n).Kind != yaml.MappingNode {
		spec, err := parse(n, path)
		if err != nil {
			return err
		}
		l.Shape = [2]shape.Spec{spec, spec}
		return nil
	}
	ends := []string{l.Ends[0].String(), l.Ends[1].String()}
	if l.VXLAN != nil {
		ends[1] = l.VXLAN.Remote.String()
	}
	if l.Pcap != nil {
		ends[1] = l.Pcap.String()
	}
	entries, err := d.mapping(n, path)
	if err != nil {
		return err
	}
	for _, e := range entries {
		j := -1
		for k, end := range ends {
			if e.key == end {
				j = k
			}
		}
		if j < 0 {
			return d.errf(e.keyAt, join(path, e.key), "not an end of this link (its ends: %s)", strings.Join(ends, ", "))
		}
		if l.Shape[j], err = parse(e.value, join(path, e.key)); err != nil {
			return err
		}
	}
	return nil
}

// mutate reads a link's packet-mutator rules: a mapping from an end (as
// written in endpoints) to one rule or a list of rules for its interface.
// Unlike a shape, rules are never for both ends at once: a misbehaving
// receiver is one end, and the other end's rules would see the same
// traffic the other way round.
func (d *decoder) mutate(l *Link, n *yaml.Node, path string) error {
	if resolve(n).Kind != yaml.MappingNode {
		return d.errf(n, path, "want a mapping from an end of the link to its rules, e.g. {%s: ack-division=4}", l.Ends[0])
	}
	ends := []string{l.Ends[0].String()}
	if !l.remoteEnd() {
		ends = append(ends, l.Ends[1].String())
	}
	entries, err := d.mapping(n, path)
	if err != nil {
		return err
	}
	for _, e := range entries {
		j := slices.Index(ends, e.key)
		if j < 0 {
			return d.errf(e.keyAt, join(path, e.key), "not an end of this link with an interface here (its ends: %s)", strings.Join(ends, ", "))
		}
		p := join(path, e.key)
		texts := []*yaml.Node{e.value}
		if resolve(e.value).Kind == yaml.SequenceNode {
			if texts, err = d.sequence(e.value, p); err != nil {
				return err
			}
		}
		for k, tn := range texts {
			rp := p
			if resolve(e.value).Kind == yaml.SequenceNode {
				rp = index(p, k)
			}
			text, err := d.scalar(tn, rp)
			if err != nil {
				return err
			}
			r, err := mutate.Parse(text)
			if err != nil {
				return d.errf(tn, rp, "%v", err)
			}
			l.Mutate[j] = append(l.Mutate[j], r)
		}
	}
	return nil
}

// check finds what only the whole lab shows: interfaces on no link,
// addresses used twice, a pcap link recording into another's file.
func (t *Topology) check(d *decoder) error {
	files := map[string]string{} // a pcap link's file or out -> what it is
	for _, l := range t.Links {
		if l.Pcap != nil {
			files[l.Pcap.Path] = fmt.Sprintf("topology.links[%d].file", l.Index)
		}
	}
	for _, l := range t.Links {
		if l.Pcap == nil || l.Pcap.OutPath == "" {
			continue
		}
		path := fmt.Sprintf("topology.links[%d].out", l.Index)
		if prev, ok := files[l.Pcap.OutPath]; ok {
			return &Error{File: d.file, Line: l.Line, Path: path, Msg: fmt.Sprintf("%s is %s already (give each pcap link its own out file)", l.Pcap.OutPath, prev)}
		}
		files[l.Pcap.OutPath] = path
	}
	owner := map[netip.Addr]string{}
	for _, n := range t.Nodes {
		path := "topology.nodes." + n.Name
		if len(n.Interfaces) == 0 {
			return &Error{File: d.file, Line: n.Line, Path: path, Msg: "no interfaces (give interfaces: with at least one, e.g. eth0: 10.0.1.10/24)"}
		}
		for _, ifc := range n.Interfaces {
			ip := path + ".interfaces." + ifc.Name
			if ifc.Link == nil {
				return &Error{File: d.file, Line: ifc.Line, Path: ip, Msg: fmt.Sprintf("on no link (add one to links, e.g. endpoints: [\"%s:%s\", ...], or remove the interface)", n.Name, ifc.Name)}
			}
			for _, p := range ifc.Addrs {
				if prev, ok := owner[p.Addr()]; ok {
					return &Error{File: d.file, Line: ifc.Line, Path: ip, Msg: fmt.Sprintf("%s is %s's already (give each interface its own address)", p.Addr(), prev)}
				}
				owner[p.Addr()] = n.Name + ":" + ifc.Name
			}
		}
		if n.Kind == NAT && n.iface(NATInterface) != nil {
			return &Error{File: d.file, Line: n.Line, Path: path + ".interfaces." + NATInterface, Msg: NATInterface + " is the nat node's interface to the host; call this one something else"}
		}
		for i, rule := range n.Filter {
			r, _ := ParseRule(rule)
			for _, ifname := range []string{r.In, r.Out} {
				if ifname != "" && n.iface(ifname) == nil && !(n.Kind == NAT && ifname == NATInterface) {
					return &Error{File: d.file, Line: n.Line, Path: index(path+".filter", i), Msg: fmt.Sprintf("%q: node %s has no interface %s", rule, n.Name, ifname)}
				}
			}
		}
	}
	return nil
}

func (t *Topology) nodeNames() string {
	var names []string
	for _, n := range t.Nodes {
		names = append(names, n.Name)
	}
	return strings.Join(names, ", ")
}

func (n *Node) ifaceNames() string {
	var names []string
	for _, ifc := range n.Interfaces {
		names = append(names, ifc.Name)
	}
	return strings.Join(names, ", ")
}

// MAC is the interface's Ethernet address: locally administered, derived
// from the lab, node and interface names, so that it is the same on every
// run and on every machine a lab spans.
func MAC(lab, node, iface string) [6]byte {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%s", lab, node, iface)
	s := h.Sum64()
	return [6]byte{0x52, byte(s >> 32), byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
}
