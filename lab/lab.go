package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/link"
)

// Options are how Up starts a lab.
type Options struct {
	// NodeCommand is the program and arguments that run a node (NodeMain):
	// by default this executable with "lab _node".
	NodeCommand []string
	// Version is ustack's version, for GET /v1/info.
	Version string
	// Log receives the nodes' log and the lab's own (os.Stderr if nil).
	Log *os.File
	// StartTimeout bounds how long a node may take to come up (10s).
	StartTimeout time.Duration
	// HoldReplays leaves the pcap links' replays waiting once the nodes
	// are up, until StartReplays: a trace or capture started in between
	// sees every replayed frame.
	HoldReplays bool
}

// Lab is a running lab: the nodes' processes, the links between them and
// the lab's control socket.
type Lab struct {
	topo  *Topology
	opts  Options
	srv   *control.Server
	vteps *vtepSet
	pcaps map[int]*pcapRelay // by link index
	logf  func(string, ...any)

	mu    sync.Mutex
	nodes []*nodeProc // in the topology's order

	stopping atomic.Bool // the lab is stopping its nodes
	downOnce sync.Once
	reqOnce  sync.Once
	downReq  chan struct{} // closed by POST /v1/lab/down
	stopped  chan struct{} // closed once every node is down
}

// nodeProc is a node's process.
type nodeProc struct {
	node     *Node
	cmd      *exec.Cmd
	lifeline *os.File // the lab's end; closing it tells the node to go
	exited   chan struct{}
	ready    chan struct{} // closed once the node said whether it serves
	state    string        // "starting", "running", then how it ended; under Lab.mu
}

// Up starts the lab t: it takes the lab's name, wires the links, starts a
// process per node and returns once every node serves its control socket.
// On error nothing of the lab is left.
func Up(t *Topology, opts Options) (*Lab, error) {
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if opts.NodeCommand == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding ustack's executable: %w", err)
		}
		opts.NodeCommand = []string{exe, "lab", "_node"}
	}
	l := &Lab{topo: t, opts: opts, downReq: make(chan struct{}), stopped: make(chan struct{})}
	l.logf = func(format string, args ...any) {
		fmt.Fprintf(opts.Log, "lab %s: "+format+"\n", append([]any{t.Name}, args...)...)
	}
	for _, n := range t.Nodes {
		if len(NodeSocketName(t.Name, n.Name)) > 64 {
			return nil, fmt.Errorf("lab %s, node %s: the two names together are too long for a control socket (shorten one)", t.Name, n.Name)
		}
	}
	srv, err := control.Listen(t.Name, l.logf)
	if err != nil {
		var taken *control.NameTakenError
		if errors.As(err, &taken) {
			return nil, fmt.Errorf("a lab or stack named %s is already running (pid %d; stop it with ustack lab down %s, or give --name)", t.Name, taken.PID, t.Name)
		}
		return nil, err
	}
	l.srv = srv
	if err := l.start(); err != nil {
		l.shutdown()
		return nil, err
	}
	if !opts.HoldReplays {
		l.StartReplays()
	}
	srv.HandleFunc("GET /v1/info", l.serveInfo)
	srv.HandleFunc("GET "+StatusPath, l.serveStatus)
	srv.HandleFunc("POST "+DownPath, l.serveDown)
	srv.HandleFunc("POST "+ReplayPath, l.serveReplay)
	return l, nil
}

// start wires the links and starts the nodes.
func (l *Lab) start() error {
	t := l.topo
	// Each interface's socket, by endpoint; the lab keeps none of them
	// once the nodes have theirs, except the VXLAN and pcap ends it
	// relays.
	sockets := map[Endpoint]int{}
	closeAll := func() {
		for _, fd := range sockets {
			unix.Close(fd)
		}
	}
	defer closeAll()
	vteps := newVTEPSet(l.logf)
	l.vteps = vteps
	l.pcaps = map[int]*pcapRelay{}
	for _, lk := range t.Links {
		fds, err := link.SocketPair()
		if err != nil {
			return err
		}
		sockets[lk.Ends[0]] = fds[0]
		if lk.Pcap != nil {
			r, err := newPcapRelay(t.Name, lk, fds[1], l.logf) // fds[1] is the relay's now
			if err != nil {
				return fmt.Errorf("%s: link %d (%s, %s): %w", t.File, lk.Index, lk.Ends[0], lk.Pcap, err)
			}
			l.pcaps[lk.Index] = r
			continue
		}
		if lk.VXLAN == nil {
			sockets[lk.Ends[1]] = fds[1]
			continue
		}
		if err := vteps.add(lk, fds[1]); err != nil { // fds[1] is the relay's now
			return fmt.Errorf("%s: link %d (%s, vni %d): %w", t.File, lk.Index, lk.Ends[0], lk.VXLAN.VNI, err)
		}
	}
	for _, n := range t.Nodes {
		var fds []int
		for _, ifc := range n.Interfaces {
			fds = append(fds, sockets[Endpoint{n.Name, ifc.Name}])
		}
		// startNode takes the sockets over: the node has them, and ours
		// are closed so that a node's death is seen by its neighbours.
		for _, ifc := range n.Interfaces {
			delete(sockets, Endpoint{n.Name, ifc.Name})
		}
		p, err := l.startNode(n, fds)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		l.mu.Lock()
		l.nodes = append(l.nodes, p)
		l.mu.Unlock()
	}
	return l.waitReady()
}

// startNode starts n's process with its spec and link sockets, and closes
// its own copies of the sockets whether or not the node started. They are
// closed through their os.Files: a descriptor closed behind an os.File's
// back would be closed again by its finalizer, by then perhaps as another
// file's descriptor.
func (l *Lab) startNode(n *Node, linkFDs []int) (*nodeProc, error) {
	links := make([]*os.File, len(linkFDs))
	for i, fd := range linkFDs {
		links[i] = os.NewFile(uintptr(fd), "link")
	}
	defer func() {
		for _, f := range links {
			f.Close()
		}
	}()
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()
	defer specW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer statusW.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		statusR.Close()
		return nil, err
	}
	defer lifeR.Close()
	cmd := exec.Command(l.opts.NodeCommand[0], l.opts.NodeCommand[1:]...)
	cmd.Stdout, cmd.Stderr = l.opts.Log, l.opts.Log
	cmd.ExtraFiles = []*os.File{specR, statusW, lifeR}
	cmd.ExtraFiles = append(cmd.ExtraFiles, links...)
	// A process group of its own: the terminal's Ctrl-C reaches the lab
	// process, which stops the nodes in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		statusR.Close()
		lifeW.Close()
		return nil, err
	}
	p := &nodeProc{node: n, cmd: cmd, lifeline: lifeW, exited: make(chan struct{}), ready: make(chan struct{}), state: "starting"}
	go func() {
		err := cmd.Wait()
		l.mu.Lock()
		p.state = describeExit(cmd.ProcessState, err)
		l.mu.Unlock()
		// A node killed outright leaves its control socket and lock; they
		// are gone before anyone waiting for the node's exit hears of it.
		control.RemoveStale(NodeSocketName(l.topo.Name, n.Name))
		close(p.exited)
		if !l.stopping.Load() {
			l.logf("node %s %s", n.Name, p.state)
		}
	}()
	json.NewEncoder(specW).Encode(l.topo.nodeSpec(n, l.opts.Version))
	specW.Close()
	go func() {
		defer close(p.ready)
		defer statusR.Close()
		line, err := bufio.NewReader(statusR).ReadString('\n')
		l.mu.Lock()
		defer l.mu.Unlock()
		switch line = strings.TrimSpace(line); {
		case line == "ok":
			p.state = "running"
		case p.state == "starting" && line != "":
			p.state = "failed: " + line
		case p.state == "starting" && err != nil:
			p.state = "failed before it was ready"
		}
	}()
	return p, nil
}

func describeExit(ps *os.ProcessState, err error) string {
	if ps == nil {
		return fmt.Sprintf("failed: %v", err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + fmt.Sprint(int(ws.Signal())) + " (" + ws.Signal().String() + ")"
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

// waitReady waits until every node has said whether it serves, and
// fails if one did not.
func (l *Lab) waitReady() error {
	timeout := time.NewTimer(l.opts.StartTimeout)
	defer timeout.Stop()
	l.mu.Lock()
	nodes := append([]*nodeProc(nil), l.nodes...)
	l.mu.Unlock()
	var failed []string
	for _, p := range nodes {
		select {
		case <-p.ready:
		case <-timeout.C:
			return fmt.Errorf("node %s did not come up within %v", p.node.Name, l.opts.StartTimeout)
		}
		l.mu.Lock()
		if p.state != "running" {
			failed = append(failed, fmt.Sprintf("node %s %s", p.node.Name, p.state))
		}
		l.mu.Unlock()
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// StartReplays starts the pcap links' replays, which Up leaves waiting
// when Options.HoldReplays is set; once started, a replay runs to the end
// of its capture.
func (l *Lab) StartReplays() {
	for _, r := range l.pcaps {
		r.start()
	}
}

// Name is the lab's name.
func (l *Lab) Name() string { return l.topo.Name }

// Socket is the lab's control socket.
func (l *Lab) Socket() string { return l.srv.Path() }

// Serve answers the lab's control API until ctx ends or POST /v1/lab/down
// comes, then takes the lab down.
func (l *Lab) Serve(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.downReq:
			cancel()
		case <-sctx.Done():
		}
	}()
	err := l.srv.Serve(sctx)
	l.Down()
	return err
}

// Down stops every node (SIGTERM, then SIGKILL after 5 s), removes what
// they and the lab left and closes the lab's control socket.
func (l *Lab) Down() {
	l.downOnce.Do(l.shutdown)
}

func (l *Lab) shutdown() {
	l.stopNodes()
	close(l.stopped)
	if l.vteps != nil {
		l.vteps.close()
	}
	for _, r := range l.pcaps {
		r.close()
	}
	if l.srv != nil {
		l.srv.Close()
	}
}

// stopNodes asks every node to stop and waits for it, killing one that
// takes more than five seconds.
func (l *Lab) stopNodes() {
	l.stopping.Store(true)
	l.mu.Lock()
	nodes := append([]*nodeProc(nil), l.nodes...)
	l.mu.Unlock()
	for _, p := range nodes {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for _, p := range nodes {
		select {
		case <-p.exited:
		case <-timeout.C:
			p.cmd.Process.Kill()
			<-p.exited
		}
		// Closed only now: a node that loses it before its SIGTERM
		// thinks the lab process died.
		p.lifeline.Close()
	}
}

// Status is what GET /v1/lab answers.
func (l *Lab) Status() Status { return l.status() }

func (l *Lab) status() Status {
	st := l.topo.Status()
	st.PID = os.Getpid()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, p := range l.nodes { // in the topology's order, as st.Nodes
		st.Nodes[i].PID = p.cmd.Process.Pid
		st.Nodes[i].State = p.state
	}
	for i := range st.Links {
		if r := l.pcaps[st.Links[i].Index]; r != nil {
			r.status(st.Links[i].Pcap)
		}
	}
	return st
}

// Status is the lab t would be once up, without its processes: what
// ustack lab graph draws of a file.
func (t *Topology) Status() Status {
	st := Status{Name: t.Name, File: t.File, Nodes: []NodeStatus{}, Links: []LinkStatus{}}
	for _, n := range t.Nodes {
		spec := t.nodeSpec(n, "")
		ns := NodeStatus{Name: n.Name, Kind: n.Kind, State: "not started",
			Socket: control.SocketPath(NodeSocketName(t.Name, n.Name)), Routes: spec.Routes, CC: n.CC, Filter: n.Filter}
		for _, is := range spec.Interfaces {
			ns.Interfaces = append(ns.Interfaces, InterfaceStatus{Name: is.Name, Addrs: is.Addrs, MAC: is.MAC, MTU: is.MTU,
				Peer: is.Peer, Egress: is.Egress, Ingress: is.Ingress})
		}
		if n.Kind == NAT {
			ns.Interfaces = append(ns.Interfaces, InterfaceStatus{Name: NATInterface, Addrs: []string{"10.0.2.15/24", "fd00::15/64"}, Peer: "host"})
		}
		st.Nodes = append(st.Nodes, ns)
	}
	for _, lk := range t.Links {
		ls := LinkStatus{Index: lk.Index, MTU: lk.MTU, Shape: [2]string{lk.Shape[0].String(), lk.Shape[1].String()}}
		for i, rules := range lk.Mutate {
			for _, r := range rules {
				ls.Mutate[i] = append(ls.Mutate[i], r.String())
			}
		}
		ls.Ends = []string{lk.Ends[0].String(), lk.farName()}
		if p := lk.Pcap; p != nil {
			ls.Pcap = &PcapStatus{File: p.Path, Out: p.OutPath, Speed: speedName(p.Speed), KeepMAC: p.KeepMAC, State: "waiting"}
		}
		st.Links = append(st.Links, ls)
	}
	return st
}

func (l *Lab) serveInfo(w http.ResponseWriter, r *http.Request) {
	control.WriteJSON(w, api.Info{Name: l.topo.Name, PID: os.Getpid(), Command: "lab", Attachment: fmt.Sprintf("lab (%d nodes)", len(l.topo.Nodes)),
		Addresses: []string{}, Socket: l.srv.Path(), Version: l.opts.Version})
}

func (l *Lab) serveStatus(w http.ResponseWriter, r *http.Request) { control.WriteJSON(w, l.status()) }

// serveReplay is POST /v1/lab/replay: it starts the held replays (those
// started already run on) and answers the lab's status.
func (l *Lab) serveReplay(w http.ResponseWriter, r *http.Request) {
	l.StartReplays()
	control.WriteJSON(w, l.status())
}

// serveDown is POST /v1/lab/down: it answers once every node is down;
// the lab's own socket goes right after.
func (l *Lab) serveDown(w http.ResponseWriter, r *http.Request) {
	l.stopNodes()
	control.WriteJSON(w, l.status())
	l.reqOnce.Do(func() { close(l.downReq) })
}
