package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/ustack/ustack/netstack"
)

func helpCommand() *command {
	c := &command{name: "help", args: "[COMMAND]", summary: "show how to use ustack or one of its commands"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		return s, func(_ context.Context, e *env, args []string) error {
			switch len(args) {
			case 0:
				fmt.Fprint(e.stdout, mainHelp())
				return nil
			case 1:
				cmd, ok := commands()[args[0]]
				if !ok {
					return usagef("help: %s: unknown command (see: ustack help)", args[0])
				}
				fmt.Fprint(e.stdout, commandHelp(cmd))
				return nil
			}
			return wantArgs("help", args, "[COMMAND]")
		}
	}
	return c
}

func mainHelp() string {
	var b strings.Builder
	b.WriteString(`ustack runs a user-level TCP/IP stack (gVisor's netstack) in an ordinary
process, attached to the host's network without privileges.

Usage: ustack COMMAND [flags] [arguments]

Commands:
`)
	cmds := commands()
	for _, name := range sortedNames(cmds) {
		fmt.Fprintf(&b, "  %-8s %s\n", name, cmds[name].summary)
	}
	b.WriteString(`
Every flag can also be set in the environment as USTACK_<FLAG> (upper case,
dashes as underscores, e.g. USTACK_CC=reno); flags on the command line win.
Repeatable flags take a comma-separated list there, except USTACK_SYSCTL,
whose settings are separated by ';' or newlines.

Exit status: 0 success, 1 runtime failure, 2 usage error.

Run 'ustack help COMMAND' for a command's flags.
`)
	return b.String()
}

func commandHelp(cmd *command) string {
	opts, _ := cmd.options()
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: ustack %s [flags] %s\n\n%s%s.\n", cmd.name, cmd.args, strings.ToUpper(cmd.summary[:1]), cmd.summary[1:])
	if d := commandDetails[cmd.name]; d != "" {
		b.WriteString("\n" + d)
	}
	if len(opts.opts) > 0 {
		b.WriteString("\nFlags (environment variable in brackets):\n")
		for _, o := range opts.opts {
			rep := ""
			if o.repeat {
				rep = " (repeatable)"
			}
			fmt.Fprintf(&b, "  %s\n      %s%s [%s]\n", o.usage(), o.help, rep, o.envName())
		}
	}
	if opts.lookup("sysctl") != nil {
		b.WriteString("\nKeys for --sysctl (Linux names accepted where Linux has the same knob):\n")
		b.WriteString(netstack.SysctlHelp())
	}
	return b.String()
}

var commandDetails = map[string]string{
	"fetch": `Fetches URL with HTTP GET over the user-level stack and writes the body to
stdout or FILE. A status other than 2xx is an error. With --stack NAME the
connection is made by the running daemon NAME instead of a new stack.
`,
	"ping": `Sends ICMP echo requests over the user-level stack, like ping(8). Without -c
it runs until interrupted. Exits 1 if no reply arrived.
`,
	"daemon": `Runs a named stack until SIGINT or SIGTERM. It serves HTTP on the unix
socket $XDG_RUNTIME_DIR/ustack/NAME.sock (without XDG_RUNTIME_DIR:
/run/ustack as root, else /tmp/ustack-UID), owner only:
  GET /v1/info            JSON: name, pid, attachment, addresses, mtu, connections
  GET /v1/sockets[?info=1] JSON: every socket, with TCP details (ustack ss)
  GET /v1/stats           JSON: every counter (ustack stats)
  GET /metrics            the counters for Prometheus
  CONNECT HOST:PORT       a TCP connection through the stack, spliced raw
  GET /v1/ping?host=H&count=N&interval=D&timeout=D&size=N
                          ping's output lines, streamed
Other commands use it with --stack NAME. See docs/control-api.md.
`,
	"ls": `Lists the running stacks of this user (daemons and ustack run) from their
control sockets: NAME PID ATTACHMENT ADDRESSES CONNS, CONNS being the TCP
connections neither listening nor closed. Sockets of stacks that died
(killed with SIGKILL, say) are removed.
`,
	"ss": `Lists the sockets of the stack NAME (or of the only running stack) like
ss(8): Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port
Process. Without -l or -a only connected sockets are shown; without -t or
-u all of TCP, UDP and ICMP. Switches may be bundled: ustack ss -tuni.
-i adds rto and rtt (ms), cwnd, segments, retransmissions and, when the
stack samples control blocks, wscale, mss, windows and snd_una, snd_nxt,
rcv_nxt. A value netstack does not know is printed as -.
`,
	"stats": `Prints the counters of the stack NAME (or of the only running stack) like
nstat: netstack's tcpip.Stats (IP, ICMP, IGMP, TCP, UDP, ARP, all NICs),
each NIC's own counters and drops by reason, and ustack's own. Zero
counters are left out unless -z is given.
`,
	"top": `Shows the connections of the stack NAME (or of the only running stack)
live: send and receive rates and the selected connection's control block,
changed fields highlighted, refreshed four times a second.
Keys: space pause, up/down or j/k select, s sort column, q or Ctrl-C quit.
`,
	"run": `Runs PROG with its IPv4 and IPv6 TCP, UDP and ICMP echo sockets served by
a new user-level stack (seccomp user notification; Linux 5.14 or later,
x86_64). PROG gets real fds, so poll, epoll, fork and exec work as usual;
only the socket calls are answered by ustack. Flags end at PROG (or at --).
Exits with PROG's status (128+N if a signal N killed it); SIGINT, SIGTERM
and SIGHUP are passed on to PROG. Not served: raw sockets (refused with
EPROTONOSUPPORT and logged). On nat, 10.0.2.2 reaches the host's loopback
and 10.0.2.3 is a DNS forwarder, e.g. ustack run -- curl
http://10.0.2.2:8000/. While PROG runs the stack serves the control API
under --name NAME (default run-PID), for ustack ss, stats and top.
`,
	"trace": `Records what happens inside the stack NAME (or the only running stack)
without stopping it, as JSON lines (docs/trace-format.md): one "cb" record
per segment a TCP connection receives (netstack's control block: snd_una,
snd_nxt, windows, cwnd, ssthresh, srtt, retransmits, recovery state) and
one "pkt" record per TCP segment crossing eth0, then an "end" record with
the counts. Stops at SIGINT, SIGTERM or after --duration; records the stack
could not queue fast enough are dropped and counted, never waited for.
Plot the file with ustack plot.
`,
	"capture": `Captures the frames of a NIC of the stack NAME (or the only running stack)
live, as pcap (Ethernet, nanosecond timestamps), without restarting it.
-w - writes to stdout: ustack capture NAME -w - | tcpdump -r -. Stops at
SIGINT or SIGTERM, or when the reader of stdout goes away; frames the
stack could not queue fast enough are dropped (counted in its log).
`,
	"portd": `Runs the port server (as root; see contrib/systemd/ustack-portd.service).
Stacks on --net host:IFACE of users other than root go through it: it
reserves the host ports its policy grants them, keeps the kernel off those
ports (an nftables table per client, ustack_portd_PID_N), hands them the
frames of their (address, port) pairs and checks every frame they send
(the interface's MAC, a shared address, a port they hold; ARP, neighbour
discovery and ICMP echo and errors only about their own addresses; no IP
options). Forged frames are dropped and counted. A client's ports are
released when it exits or dies. SIGHUP rereads the policy.
  ustack portd status     list the clients (a user: their own; root: all):
                          user, pid, interface, ports, frames sent,
                          refused and received
Policy lines: allow WHO IFACE PROTOS PORTS, limit WHO [sessions N] [ports N]
  allow user:alice eth0 tcp,udp 8000-8099,ephemeral
  allow group:web * tcp 80,443
  limit group:web sessions 4 ports 512    (default: sessions 16 ports 4096)
`,
	"version": `Prints ustack's version, the Go version it was built with and the gVisor
version of its netstack.
`,
}
