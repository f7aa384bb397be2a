package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/link"
	"github.com/ustack/ustack/mutate"
	"github.com/ustack/ustack/observe"
	"github.com/ustack/ustack/serve"
	"github.com/ustack/ustack/shape"
)

// A node runs in a process of its own, started by the lab process with
// these descriptors.
const (
	fdSpec     = 3 // the NodeSpec as JSON, then end of file
	fdStatus   = 4 // the node writes "ok", or what went wrong, and closes it
	fdLifeline = 5 // end of file here means the lab process is gone
	fdLinks    = 6 // the first link socket; one per interface on a link, in order
)

// NodeSpec is what a node process is told about itself.
type NodeSpec struct {
	Lab        string          `json:"lab"`
	Name       string          `json:"name"`
	Kind       Kind            `json:"kind"`
	Interfaces []InterfaceSpec `json:"interfaces"`
	Routes     []string        `json:"routes"`
	CC         string          `json:"cc"`
	Sysctl     []Sysctl        `json:"sysctl"`
	Filter     []string        `json:"filter"`
	Version    string          `json:"version"`
}

// InterfaceSpec is one interface on a link: its socket is the next
// descriptor from fdLinks.
type InterfaceSpec struct {
	Name    string   `json:"name"`
	Addrs   []string `json:"addrs"`
	MAC     string   `json:"mac"`
	MTU     int      `json:"mtu"`
	Peer    string   `json:"peer"`
	Egress  string   `json:"egress"`
	Ingress string   `json:"ingress"`
	Mutate  []string `json:"mutate,omitempty"` // packet-mutator rules
}

// nodeSpec is the spec of node n of t.
func (t *Topology) nodeSpec(n *Node, version string) NodeSpec {
	s := NodeSpec{Lab: t.Name, Name: n.Name, Kind: n.Kind, CC: n.CC, Sysctl: n.Sysctl, Filter: n.Filter, Version: version}
	for _, r := range n.Routes {
		s.Routes = append(s.Routes, r.String())
	}
	for _, ifc := range n.Interfaces {
		l := ifc.Link
		end := 0
		if l.Ends[1] == (Endpoint{n.Name, ifc.Name}) && !l.remoteEnd() {
			end = 1
		}
		is := InterfaceSpec{Name: ifc.Name, MTU: l.MTU, Egress: l.Shape[end].String()}
		for _, r := range l.Mutate[end] {
			is.Mutate = append(is.Mutate, r.String())
		}
		mac := MAC(t.Name, n.Name, ifc.Name)
		is.MAC = net.HardwareAddr(mac[:]).String()
		for _, p := range ifc.Addrs {
			is.Addrs = append(is.Addrs, p.String())
		}
		if l.remoteEnd() {
			is.Peer = l.farName()
			// Frames from the remote end (or the capture) meet its shape
			// here.
			is.Ingress = l.Shape[1].String()
		} else {
			is.Peer = l.Ends[1-end].String()
		}
		s.Interfaces = append(s.Interfaces, is)
	}
	return s
}

// NodeMain is the body of a node process (ustack lab _node): it reads its
// spec and descriptors, builds and serves the node until it is told to
// stop (SIGTERM, SIGINT) or the lab process goes away, and returns the
// exit status. logw receives its log.
func NodeMain(logw io.Writer) int {
	specFile := os.NewFile(fdSpec, "spec")
	status := os.NewFile(fdStatus, "status")
	lifeline := os.NewFile(fdLifeline, "lifeline")
	if specFile == nil || status == nil || lifeline == nil {
		fmt.Fprintln(logw, "ustack lab: a node is started by ustack lab up, with its descriptors")
		return 2
	}
	var spec NodeSpec
	err := json.NewDecoder(specFile).Decode(&spec)
	specFile.Close()
	if err != nil {
		fmt.Fprintf(status, "reading the node's spec: %v\n", err)
		return 1
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(logw, "lab %s node %s: "+format+"\n", append([]any{spec.Lab, spec.Name}, args...)...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	// The lab process, to wait for its end before taking its socket away
	// should it die (see below).
	labProc, _ := unix.PidfdOpen(os.Getppid(), 0)
	if labProc > 0 {
		defer unix.Close(labProc)
	}
	orphaned := make(chan struct{})
	go func() {
		// The lab process holds the other end; it never writes.
		io.Copy(io.Discard, lifeline)
		close(orphaned)
		stop()
	}()
	n, err := startNode(spec, fdLinks, logf)
	if err != nil {
		fmt.Fprintln(status, err)
		status.Close()
		return 1
	}
	fmt.Fprintln(status, "ok")
	status.Close()
	if err := n.served.Serve(ctx); err != nil {
		logf("control socket: %v", err)
	}
	if err := n.served.Close(); err != nil {
		logf("closing: %v", err)
	}
	select {
	case <-orphaned:
		// The lab process died without taking its socket away; the last
		// of its nodes to go does it. The lifeline closes while the dying
		// process is still closing its descriptors, perhaps before the
		// lock on its name: wait until it has exited (its pidfd is then
		// readable), or the lock would still look held.
		if labProc > 0 {
			unix.Poll([]unix.PollFd{{Fd: int32(labProc), Events: unix.POLLIN}}, 5000)
		}
		control.RemoveStale(spec.Lab)
		logf("stopped: the lab process is gone")
	default:
	}
	return 0
}

// node is a running node: its served stack and what the lab adds.
type node struct {
	spec   NodeSpec
	served *serve.Stack
	stack  *ustack.Stack
	shapes map[string]*shape.Endpoint
	// mutators are the interfaces' packet mutators, for those that have
	// rules.
	mutators map[string]*mutate.Endpoint
	down     map[string]*link.FrameSocket
	filter   *Filter
}

// startNode builds the node from spec on the link sockets from firstFD on
// and serves it on its control socket.
func startNode(spec NodeSpec, firstFD int, logf func(string, ...any)) (*node, error) {
	srv, err := control.Listen(NodeSocketName(spec.Lab, spec.Name), logf)
	if err != nil {
		return nil, err
	}
	n := &node{spec: spec, shapes: map[string]*shape.Endpoint{}, mutators: map[string]*mutate.Endpoint{}, down: map[string]*link.FrameSocket{}}
	cfg := ustack.NodeConfig{Label: "lab:" + spec.Lab, Forwarding: spec.Kind != Host, Logf: logf}
	cfg.TCP.CongestionControl = spec.CC
	for _, kv := range spec.Sysctl {
		if err := cfg.TCP.Set(kv.Key, kv.Value); err != nil {
			srv.Close()
			return nil, fmt.Errorf("sysctl %s: %w", kv.Key, err)
		}
	}
	var links []linkCloser
	fail := func(err error) (*node, error) {
		for _, l := range links {
			l.Close()
		}
		srv.Close()
		return nil, err
	}
	for i, is := range spec.Interfaces {
		ni, l, err := n.openInterface(is, firstFD+i)
		if err != nil {
			// openInterface closed its own; the later ones are still ours.
			for fd := firstFD + i + 1; fd < firstFD+len(spec.Interfaces); fd++ {
				syscall.Close(fd)
			}
			return fail(fmt.Errorf("%s: %w", is.Name, err))
		}
		links = append(links, l)
		cfg.Interfaces = append(cfg.Interfaces, ni)
	}
	if spec.Kind == NAT {
		cfg.Interfaces = append(cfg.Interfaces, ustack.NodeInterface{Name: NATInterface, NAT: &ustack.NAT{}})
	}
	for _, text := range spec.Routes {
		r, err := ParseRoute(text)
		if err != nil {
			return fail(err)
		}
		cfg.Routes = append(cfg.Routes, r)
	}
	links = nil // NewNode takes them over, also when it fails
	st, err := ustack.NewNode(cfg)
	if err != nil {
		srv.Close()
		return nil, err
	}
	n.stack = st
	rules := make([]Rule, 0, len(spec.Filter)+1)
	for _, text := range spec.Filter {
		r, err := ParseRule(text)
		if err != nil {
			st.Close()
			srv.Close()
			return nil, err
		}
		rules = append(rules, r)
	}
	if spec.Kind == NAT {
		// What leaves for the host leaves from the nat interface's address,
		// so the gateway's replies come back here.
		r, _ := ParseRule("-t nat -A POSTROUTING -o " + NATInterface + " -j MASQUERADE")
		rules = append(rules, r)
	}
	// A trace on the node records each packet a rule or policy takes.
	verdicts := observe.NewRuleFeed()
	if n.filter, err = InstallFilter(st.Netstack(), rules, verdicts); err != nil {
		st.Close()
		srv.Close()
		return nil, err
	}
	devs := map[string]serve.LinkDev{}
	for name, sh := range n.shapes {
		devs[name] = shapedLink{sh}
	}
	n.served = serve.New(srv, st, serve.Config{Command: "lab", Version: spec.Version, Attach: true, Logf: logf, Links: devs, Rules: verdicts})
	srv.HandleFunc("GET "+NodePath, n.serveNode)
	return n, nil
}

// linkCloser is a link endpoint the node opened, before NewNode takes it
// over.
type linkCloser interface{ Close() }

// openInterface wraps the link socket fd for interface is: frames, then
// the shaper.
// openInterface opens the interface on fd, and closes fd when it fails.
func (n *node) openInterface(is InterfaceSpec, fd int) (_ ustack.NodeInterface, _ linkCloser, err error) {
	wrapped := false
	defer func() {
		if err != nil && !wrapped {
			syscall.Close(fd)
		}
	}()
	ni := ustack.NodeInterface{Name: is.Name}
	for _, a := range is.Addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return ni, nil, err
		}
		ni.Addrs = append(ni.Addrs, p)
	}
	mac, err := net.ParseMAC(is.MAC)
	if err != nil {
		return ni, nil, err
	}
	egress, err := shape.Parse(is.Egress)
	if err != nil {
		return ni, nil, fmt.Errorf("egress: %w", err)
	}
	ingress, err := shape.Parse(is.Ingress)
	if err != nil {
		return ni, nil, fmt.Errorf("ingress: %w", err)
	}
	var rules []mutate.Rule
	for _, text := range is.Mutate {
		r, err := mutate.Parse(text)
		if err != nil {
			return ni, nil, fmt.Errorf("mutate: %w", err)
		}
		rules = append(rules, r)
	}
	fs, err := link.NewFrameSocket(fd, uint32(is.MTU), tcpip.LinkAddress(mac))
	if err != nil {
		return ni, nil, err
	}
	wrapped = true // closed with fs from here on
	sh, err := shape.New(fs, nil, egress, ingress)
	if err != nil {
		fs.Close()
		return ni, nil, err
	}
	n.shapes[is.Name] = sh
	n.down[is.Name] = fs
	ni.Link = sh
	if len(rules) > 0 {
		// Above the shaper, as on a stack of its own: what a rule sends
		// crosses the emulated link like any frame.
		mu, err := mutate.New(sh, nil, header.EthernetMinimumSize, rules)
		if err != nil {
			sh.Close()
			return ni, nil, err
		}
		n.mutators[is.Name] = mu
		ni.Link = mu
		return ni, mu, nil
	}
	return ni, sh, nil
}

// reply is what GET /v1/lab/node answers.
func (n *node) reply() NodeReply {
	r := NodeReply{Lab: n.spec.Lab, Name: n.spec.Name, Kind: n.spec.Kind, Routes: n.spec.Routes, Filter: n.filter.Counters(),
		Policy: n.filter.PolicyCounters()}
	if r.Routes == nil {
		r.Routes = []string{}
	}
	for _, is := range n.spec.Interfaces {
		sh := n.shapes[is.Name]
		eg, in := sh.Stats(shape.Egress), sh.Stats(shape.Ingress)
		r.Interfaces = append(r.Interfaces, InterfaceStatus{Name: is.Name, Addrs: is.Addrs, MAC: is.MAC, MTU: is.MTU, Peer: is.Peer,
			Egress: eg.Spec.String(), Ingress: in.Spec.String(), EgressStats: linkStats(eg), IngressStats: linkStats(in),
			Down: n.down[is.Name].Down.Load(), Mutate: mutateStats(n.mutators[is.Name])})
	}
	return r
}

// mutateStats are mu's counters for the node's answer; nil for none.
func mutateStats(mu *mutate.Endpoint) *MutateStats {
	if mu == nil {
		return nil
	}
	st := mu.Stats()
	ms := &MutateStats{Rules: []MutateRuleStats{}, Malformed: st.Malformed}
	for _, r := range st.Rules {
		ms.Rules = append(ms.Rules, MutateRuleStats{Rule: r.Rule, Matched: r.Matched, Acted: r.Acted, Injected: r.Injected})
	}
	return ms
}

func (n *node) serveNode(w http.ResponseWriter, r *http.Request) {
	control.WriteJSON(w, n.reply())
}

// shapedLink is an interface's shaper as GET and POST /v1/link reach it
// (ustack link set LAB/NODE IFACE ...): the frames leaving the interface
// meet its egress direction, those arriving its ingress.
type shapedLink struct{ sh *shape.Endpoint }

func (l shapedLink) SetLink(d shape.Direction, spec shape.Spec) error { return l.sh.Set(d, spec) }
func (l shapedLink) LinkStats(d shape.Direction) shape.Stats          { return l.sh.Stats(d) }
