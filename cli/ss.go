package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
)

func lsCommand() *command {
	c := &command{name: "ls", summary: "list the running stacks of this user"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var asJSON bool
		s.add(&option{names: []string{"json"}, value: boolValue{&asJSON}, help: "print JSON (the /v1/info of each stack)"})
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args); err != nil {
				return err
			}
			stacks, err := control.List(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				if stacks == nil {
					stacks = []api.Info{}
				}
				return writeJSON(e.stdout, stacks)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPID\tATTACHMENT\tADDRESSES\tCONNS")
			for _, st := range stacks {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\n", st.Name, st.PID, st.Attachment, strings.Join(st.Addresses, ","), st.Connections)
			}
			return tw.Flush()
		}
	}
	return c
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// pickStack returns a client for the stack named in args, or for the only
// running stack when args is empty.
func pickStack(ctx context.Context, cmd string, args []string) (*control.Client, error) {
	switch len(args) {
	case 0:
		return stackNamed(ctx, cmd, "")
	case 1:
		return stackNamed(ctx, cmd, args[0])
	}
	return nil, usagef("%s: unexpected argument %q (usage: ustack %s [flags] [NAME])", cmd, args[1], cmd)
}

// stackNamed returns a client for the stack called name, or for the only
// running stack when name is empty. Every command that takes a stack's
// NAME resolves it here; a lab's node is named LAB/NODE.
func stackNamed(ctx context.Context, cmd, name string) (*control.Client, error) {
	if name != "" {
		stack := control.StackName(name)
		if !control.ValidName(stack) {
			return nil, usagef("%s: %q is not a stack name (see: ustack ls)", cmd, name)
		}
		return control.Dial(stack), nil
	}
	stacks, err := control.List(ctx)
	if err != nil {
		return nil, err
	}
	switch len(stacks) {
	case 0:
		return nil, fmt.Errorf("%s: no stack is running (start one with: ustack daemon --name NAME, or ustack run PROG)", cmd)
	case 1:
		return control.Dial(stacks[0].Name), nil // where List found it
	}
	var names []string
	for _, st := range stacks {
		names = append(names, st.Name)
	}
	return nil, usagef("%s: %d stacks are running (%s): name one, e.g. ustack %s %s", cmd, len(stacks), strings.Join(names, ", "), cmd, names[0])
}

// getFrom fetches path from the stack, naming the stack in errors.
func getFrom(ctx context.Context, cmd string, c *control.Client, path string, v any) error {
	err := c.Get(ctx, path, v)
	var nr *control.NotRunningError
	if errors.As(err, &nr) {
		return fmt.Errorf("%s: no stack named %s is running (see: ustack ls)", cmd, c.Name)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}

// ssOptions are ss(8)'s switches that ustack ss takes.
type ssOptions struct {
	tcp, udp, listening, all, info, numeric, processes, v4, v6, json bool
}

func ssCommand() *command {
	c := &command{name: "ss", args: "[NAME]", summary: "list a stack's sockets, like ss(8)"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name, bundled: true}
		var o ssOptions
		for _, f := range []struct {
			short, long string
			p           *bool
			help        string
		}{
			{"t", "tcp", &o.tcp, "TCP sockets"},
			{"u", "udp", &o.udp, "UDP sockets"},
			{"l", "listening", &o.listening, "only listening sockets (TCP LISTEN, unconnected UDP)"},
			{"a", "all", &o.all, "listening and connected sockets"},
			{"i", "info", &o.info, "TCP details on a second line (cc, wscale, rto, rtt, cwnd, ... snd_una, snd_nxt, rcv_nxt)"},
			{"n", "numeric", &o.numeric, "do not turn port numbers into service names"},
			{"p", "processes", &o.processes, "the process that owns each socket (ustack run)"},
			{"4", "ipv4", &o.v4, "IPv4 sockets only"},
			{"6", "ipv6", &o.v6, "IPv6 sockets only"},
		} {
			s.add(&option{names: []string{f.short, f.long}, value: boolValue{f.p}, help: f.help})
		}
		s.add(&option{names: []string{"json"}, value: boolValue{&o.json}, help: "print the selected sockets as JSON"})
		return s, func(ctx context.Context, e *env, args []string) error {
			client, err := pickStack(ctx, c.name, args)
			if err != nil {
				return err
			}
			path := "/v1/sockets"
			if o.info || o.json {
				path += "?info=1"
			}
			var reply api.SocketsReply
			if err := getFrom(ctx, c.name, client, path, &reply); err != nil {
				return err
			}
			socks := o.filter(reply.Sockets)
			if o.json {
				if socks == nil {
					socks = []api.Socket{}
				}
				return writeJSON(e.stdout, socks)
			}
			_, err = io.WriteString(e.stdout, formatSS(socks, o, lookupService))
			return err
		}
	}
	return c
}

// filter keeps the sockets ss would show with these switches.
func (o ssOptions) filter(in []api.Socket) []api.Socket {
	var out []api.Socket
	for _, s := range in {
		switch {
		case (o.tcp || o.udp) && !(o.tcp && s.Netid == "tcp" || o.udp && s.Netid == "udp"):
			continue
		case o.v4 != o.v6 && s.Local.V6 != o.v6:
			continue
		case o.all:
		case o.listening && !s.Listening():
			continue
		case !o.listening && !s.Connected():
			continue
		}
		out = append(out, s)
	}
	return out
}

// formatSS lays sockets out as ss -tuna does: Netid State Recv-Q Send-Q
// Local Address:Port Peer Address:Port Process, addresses right-aligned on
// the colon, and with -i a second line of details after a tab.
func formatSS(socks []api.Socket, o ssOptions, service func(port uint16, netid string) string) string {
	type row struct {
		cells            [4]string
		laddr, lport     string
		paddr, pport     string
		process, details string
	}
	rows := make([]row, 0, len(socks))
	port := func(p uint16, netid string) string {
		if p == 0 {
			return "*"
		}
		if !o.numeric {
			if name := service(p, netid); name != "" {
				return name
			}
		}
		return strconv.Itoa(int(p))
	}
	for _, s := range socks {
		r := row{cells: [4]string{s.Netid, s.State, queue(s.RecvQ), queue(s.SendQ)}}
		r.laddr, r.lport = hostText(s.Local), port(s.Local.Port, s.Netid)
		r.paddr, r.pport = hostText(s.Peer), port(s.Peer.Port, s.Netid)
		if o.processes && s.Process != nil {
			r.process = fmt.Sprintf("users:((%q,pid=%d,fd=-))", s.Process.Comm, s.Process.PID)
		}
		if o.info && s.TCP != nil {
			r.details = tcpDetails(s.TCP)
		}
		rows = append(rows, r)
	}
	headers := [4]string{"Netid", "State", "Recv-Q", "Send-Q"}
	var widths [4]int
	for i, h := range headers {
		widths[i] = len(h)
	}
	la, lp, pa, pp := len("Local Address"), len("Port"), len("Peer Address"), len("Port")
	for _, r := range rows {
		for i, c := range r.cells {
			widths[i] = max(widths[i], len(c))
		}
		la, lp = max(la, len(r.laddr)), max(lp, len(r.lport))
		pa, pp = max(pa, len(r.paddr)), max(pp, len(r.pport))
	}
	line := func(cells [4]string, laddr, lport, paddr, pport, process string) string {
		var b strings.Builder
		for i, c := range cells {
			fmt.Fprintf(&b, "%-*s ", widths[i], c)
		}
		fmt.Fprintf(&b, "%*s:%-*s %*s:%-*s %s", la, laddr, lp, lport, pa, paddr, pp, pport, process)
		return strings.TrimRight(b.String(), " ") + "\n"
	}
	var b strings.Builder
	b.WriteString(line(headers, "Local Address", "Port", "Peer Address", "Port", "Process"))
	for _, r := range rows {
		b.WriteString(line(r.cells, r.laddr, r.lport, r.paddr, r.pport, r.process))
		if r.details != "" {
			b.WriteString("\t " + r.details + "\n")
		}
	}
	return b.String()
}

func queue(n *int) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(*n)
}

// hostText writes an address as ss does: 10.0.2.15, [fd00::15], 0.0.0.0,
// [::], or * for a dual-stack socket bound to no address.
func hostText(a api.Addr) string {
	switch {
	case a.Any:
		return "*"
	case a.IP == "" && a.V6:
		return "[::]"
	case a.IP == "":
		return "0.0.0.0"
	case a.V6:
		return "[" + a.IP + "]"
	}
	return a.IP
}

// tcpDetails is ss -i's second line, in its units (milliseconds for rto
// and rtt, segments for cwnd and ssthresh, bytes for windows), followed by
// RFC 793's sequence variables when the probe has a sample.
func tcpDetails(t *api.TCPInfo) string {
	var f []string
	add := func(format string, args ...any) { f = append(f, fmt.Sprintf(format, args...)) }
	if t.CC != "" {
		f = append(f, t.CC)
	}

	cb := t.ControlBlock
	if cb != nil {
		add("wscale:%d,%d", cb.SndWscale, cb.RcvWscale)
	}
	add("rto:%s", msText(t.RTOMs))
	if t.RTTMs > 0 {
		add("rtt:%s/%s", msText(t.RTTMs), msText(t.RTTVarMs))
	}
	if cb != nil && cb.MSS > 0 {
		add("mss:%d", cb.MSS)
	}
	add("cwnd:%d", t.Cwnd)
	if t.Ssthresh < 0xFFFF { // ss leaves out the "infinite" initial value
		add("ssthresh:%d", t.Ssthresh)
	}
	for _, b := range []struct {
		name string
		v    uint64
	}{{"bytes_sent", t.BytesSent}, {"bytes_acked", t.BytesAcked}, {"bytes_received", t.BytesReceived}} {
		if b.v > 0 { // as ss, which leaves out zero counts
			add("%s:%d", b.name, b.v)
		}
	}
	add("segs_out:%d segs_in:%d", t.SegsOut, t.SegsIn)
	if cb != nil && cb.Outstanding > 0 {
		add("unacked:%d", cb.Outstanding)
	}
	if t.Retrans > 0 {
		add("retrans:%d", t.Retrans)
	}
	if t.Lost > 0 {
		add("lost:%d", t.Lost)
	}
	if cb != nil && cb.SackedOut > 0 {
		add("sacked:%d", cb.SackedOut)
	}
	if t.ReorderSeen {
		f = append(f, "reord_seen")
	}
	// The algorithm's own state, named as Linux's ss names bbr:(...).
	if t.CCInfo != "" {
		add("%s:(%s)", t.CC, t.CCInfo)
	}
	if cb != nil {
		add("snd_wnd:%d rcv_wnd:%d snd_una:%d snd_nxt:%d rcv_nxt:%d", cb.SndWnd, cb.RcvWnd, cb.SndUna, cb.SndNxt, cb.RcvNxt)
	}
	return strings.Join(f, " ")
}

// msText prints milliseconds as ss does: at most three decimals, no
// trailing zeros (0.412, 204).
func msText(ms float64) string {
	return strconv.FormatFloat(float64(int64(ms*1000+0.5))/1000, 'f', -1, 64)
}

var (
	servicesOnce sync.Once
	services     map[string]string // "80/tcp" -> "http"
)

// lookupService names a port from /etc/services, as ss does without -n.
func lookupService(port uint16, netid string) string {
	servicesOnce.Do(func() {
		services = map[string]string{}
		f, err := os.Open("/etc/services")
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(strings.SplitN(sc.Text(), "#", 2)[0])
			if len(fields) >= 2 {
				if _, ok := services[fields[1]]; !ok {
					services[fields[1]] = fields[0]
				}
			}
		}
	})
	return services[strconv.Itoa(int(port))+"/"+netid]
}
