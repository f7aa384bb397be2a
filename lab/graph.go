package lab

import (
	"bytes"
	"fmt"
	"html"
	"path/filepath"
	"strconv"
	"strings"
)

// DOT draws the lab st as a Graphviz graph: a box per node with its kind,
// routes and a row per interface with its addresses, and an edge per link
// from interface to interface, labelled with its MTU and the shape of each
// direction. A VXLAN link's far end is a dashed box of its own, a pcap
// link's a dashed note naming its capture and out file; a nat
// node's way out is a dashed edge to "host". ustack lab graph has
// Graphviz's dot lay it out and draw it.
func DOT(st Status) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "graph %s {\n", quote("lab "+st.Name))
	b.WriteString("\tgraph [rankdir=LR, nodesep=0.6, ranksep=1.2, fontname=\"Helvetica\", labelloc=t, label=" + quote("lab "+st.Name) + "];\n")
	b.WriteString("\tnode [shape=plain, fontname=\"Helvetica\", fontsize=11];\n")
	b.WriteString("\tedge [fontname=\"Helvetica\", fontsize=9];\n")
	for _, n := range st.Nodes {
		fill := map[Kind]string{Host: "#ffffff", Router: "#dde8f6", NAT: "#f6ecd6"}[n.Kind]
		border := "black"
		if n.State != "" && n.State != "running" && n.State != "not started" {
			border = "red"
		}
		fmt.Fprintf(&b, "\t%s [label=<<table border=\"1\" cellborder=\"0\" cellspacing=\"0\" cellpadding=\"3\" color=\"%s\" bgcolor=\"%s\">", quote(n.Name), border, fill)
		fmt.Fprintf(&b, "<tr><td><b>%s</b> %s</td></tr>", html.EscapeString(n.Name), html.EscapeString(string(n.Kind)))
		if border == "red" {
			fmt.Fprintf(&b, "<tr><td><font color=\"red\">%s</font></td></tr>", html.EscapeString(n.State))
		}
		if n.CC != "" {
			fmt.Fprintf(&b, "<tr><td><font point-size=\"9\">cc %s</font></td></tr>", html.EscapeString(n.CC))
		}
		for _, r := range n.Routes {
			fmt.Fprintf(&b, "<tr><td><font point-size=\"9\">%s</font></td></tr>", html.EscapeString(r))
		}
		for _, f := range n.Filter {
			fmt.Fprintf(&b, "<tr><td><font point-size=\"8\">%s</font></td></tr>", html.EscapeString(f))
		}
		for _, is := range n.Interfaces {
			fmt.Fprintf(&b, "<tr><td port=%s border=\"1\" sides=\"t\"><font point-size=\"9\">%s</font></td></tr>",
				quote(is.Name), html.EscapeString(strings.Join(append([]string{is.Name}, is.Addrs...), " ")))
		}
		b.WriteString("</table>>];\n")
		for _, is := range n.Interfaces {
			if is.Peer == "host" {
				fmt.Fprintf(&b, "\t%s [label=\"host\\n(the machine's network)\", shape=box, style=dashed];\n", quote("host"))
				fmt.Fprintf(&b, "\t%s:%s -- %s [style=dashed, label=\"nat\"];\n", quote(n.Name), quote(is.Name), quote("host"))
			}
		}
	}
	for _, l := range st.Links {
		if len(l.Ends) != 2 {
			continue
		}
		label := "mtu " + strconv.Itoa(l.MTU)
		for i, dir := range [2]string{"→", "←"} {
			if l.Shape[i] != "" {
				label += "\n" + dir + " " + l.Shape[i]
			}
			if len(l.Mutate[i]) > 0 {
				label += "\n" + dir + " mutate " + strings.Join(l.Mutate[i], "; ")
			}
		}
		far, style := port(l.Ends[1]), ""
		if strings.HasPrefix(l.Ends[1], "vxlan:") {
			far, style = quote(l.Ends[1]), ", style=dashed"
			fmt.Fprintf(&b, "\t%s [label=%s, shape=box, style=dashed];\n", far, quote("VXLAN to\n"+strings.TrimPrefix(l.Ends[1], "vxlan:")))
		}
		if p := l.Pcap; p != nil {
			// A file, not a machine: a note, named by the link so that two
			// links replaying one capture are two notes.
			far, style = quote(fmt.Sprintf("pcap link %d", l.Index)), ", style=dashed"
			text := "replays " + filepath.Base(p.File) + "\nspeed " + p.Speed
			if p.KeepMAC {
				text += ", mac keep"
			}
			if p.Out != "" {
				text += "\nrecords to " + filepath.Base(p.Out)
			}
			if p.State != "waiting" {
				text += fmt.Sprintf("\n%s: %d replayed, %d skipped, %d sent", p.State, p.Replayed, p.Skipped, p.Sent)
			}
			fmt.Fprintf(&b, "\t%s [label=%s, shape=note, style=dashed];\n", far, quote(text))
		}
		fmt.Fprintf(&b, "\t%s -- %s [label=%s%s];\n", port(l.Ends[0]), far, quote(label), style)
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// port is the DOT name of the node port of "node:iface".
func port(endpoint string) string {
	node, iface, _ := strings.Cut(endpoint, ":")
	return quote(node) + ":" + quote(iface)
}

// quote makes s a DOT string: in double quotes, with quotes and
// backslashes escaped and newlines as DOT's centred line breaks.
func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"`
}
