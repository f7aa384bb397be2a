package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/ustack/ustack/tcpplot"
)

func plotCommand() *command {
	c := &command{name: "plot", args: "FILE", summary: "draw a TCP connection of a trace or pcap: time-sequence, cwnd, RTT or throughput"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var output, graph string
		var conn int
		var list bool
		s.add(&option{names: []string{"o", "output"}, arg: "OUT", value: stringValue{&output},
			help: "the image to write; its extension picks the format (.svg, .png, .pdf, ...); required unless --list"})
		s.add(&option{names: []string{"graph"}, arg: "GRAPH", value: stringValue{&graph},
			help: "tsg (time-sequence, the default), cwnd, rtt or tput"})
		s.add(&option{names: []string{"conn"}, arg: "N", value: intValue{p: &conn, min: 1, max: 1 << 30, what: "a connection number"},
			help: "the connection to draw, numbered by first appearance (see --list); default: the one that carried the most data"})
		s.add(&option{names: []string{"list"}, value: boolValue{&list},
			help: "list the file's connections instead of drawing"})
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args, "FILE"); err != nil {
				return err
			}
			if graph == "" {
				graph = "tsg"
			}
			known := false
			for _, g := range tcpplot.Graphs {
				known = known || g == graph
			}
			if !known {
				return usagef("--graph: unknown graph %q (use %s)", graph, strings.Join(tcpplot.Graphs, ", "))
			}
			if !list {
				if output == "" {
					return usagef("plot: missing -o OUT (the image to write, e.g. -o tsg.svg or -o tsg.png)")
				}
				if err := tcpplot.CheckFormat(output); err != nil {
					return usagef("-o: %v", err)
				}
			}
			f, err := tcpplot.Load(args[0])
			if err != nil {
				return fmt.Errorf("plot: %w", err)
			}
			if list {
				f.List(e.stdout)
				return nil
			}
			cn := f.Busiest()
			if conn != 0 {
				if conn > len(f.Conns) {
					return usagef("--conn: %s has %d connections (see: ustack plot %s --list)", args[0], len(f.Conns), args[0])
				}
				cn = f.Conns[conn-1]
			}
			if err := tcpplot.Draw(f, cn, graph, output); err != nil {
				return fmt.Errorf("plot: %w", err)
			}
			return nil
		}
	}
	return c
}
