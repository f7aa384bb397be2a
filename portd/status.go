package portd

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteStatus prints holders as a table, one session per line.
func WriteStatus(w io.Writer, hs []Holder) error {
	if len(hs) == 0 {
		_, err := fmt.Fprintln(w, "no clients")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tUSER\tPID\tIFACE\tTCP\tUDP\tSENT\tREFUSED\tRECEIVED")
	for _, h := range hs {
		fmt.Fprintf(tw, "%d\t%s(%d)\t%d\t%s\t%s\t%s\t%d\t%d\t%d\n", h.ID, h.User, h.UID, h.PID, h.Iface,
			orDash(PortRanges(h.TCP)), orDash(PortRanges(h.UDP)), h.Sent, h.Refused, h.Received)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// PortRanges writes ports as "80,8000-8099".
func PortRanges(ports []uint16) string {
	ps := slices.Clone(ports)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	var parts []string
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(ps[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ps[i], ps[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
