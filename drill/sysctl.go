package drill

import (
	"fmt"
	"strings"
)

// sysctlCommand reads a script's shell command as sysctl settings, the only
// commands that mean something to a user-level stack: "sysctl [-q] [-w]
// KEY=VALUE ...", and "echo VALUE > /proc/sys/KEY/PATH", joined by ';',
// '&&' or newlines. Anything else is an error naming the command.
func sysctlCommand(cmd string) ([][2]string, error) {
	var out [][2]string
	for _, part := range splitShell(cmd) {
		f := shellFields(part)
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "sysctl":
			kvs := 0
			for _, a := range f[1:] {
				if strings.HasPrefix(a, "-") {
					if a != "-q" && a != "-w" && a != "-qw" && a != "-wq" {
						return nil, fmt.Errorf("shell command %q: sysctl option %s is not supported under ustack (only -q and -w)", part, a)
					}
					continue
				}
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					return nil, fmt.Errorf("shell command %q: only setting sysctls (KEY=VALUE) is supported under ustack", part)
				}
				out = append(out, [2]string{k, v})
				kvs++
			}
			if kvs == 0 {
				return nil, fmt.Errorf("shell command %q sets nothing", part)
			}
		case f[0] == "echo" && len(f) == 4 && f[2] == ">" && strings.HasPrefix(f[3], "/proc/sys/"):
			key := strings.ReplaceAll(strings.TrimPrefix(f[3], "/proc/sys/"), "/", ".")
			out = append(out, [2]string{key, f[1]})
		default:
			return nil, fmt.Errorf("shell command %q cannot run under ustack: only sysctl settings (sysctl -q KEY=VALUE, echo VALUE > /proc/sys/...) map to the stack; run the script with --against kernel", part)
		}
	}
	return out, nil
}

// splitShell splits a command line at ';', '&&' and newlines outside
// quotes.
func splitShell(s string) []string {
	var parts []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
			cur.WriteByte(c)
		case c == ';' || c == '\n':
			parts = append(parts, cur.String())
			cur.Reset()
		case c == '&' && i+1 < len(s) && s[i+1] == '&':
			parts = append(parts, cur.String())
			cur.Reset()
			i++
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" && !strings.HasPrefix(p, "#") {
			out = append(out, p)
		}
	}
	return out
}

// shellFields splits at spaces outside quotes and drops the quotes.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	in := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		case c == '>' && !in:
			out = append(out, ">")
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// fixedSysctls are Linux settings ustack has no knob for, with the value
// its behaviour always corresponds to. A script may set one to that value
// (so that the kernel behaves as ustack does); any other value is an
// error.
var fixedSysctls = map[string]string{
	// netstack always offers timestamps and window scaling.
	"net.ipv4.tcp_timestamps":     "1",
	"net.ipv4.tcp_window_scaling": "1",
	// netstack neither negotiates ECN nor does TCP Fast Open.
	"net.ipv4.tcp_ecn":      "0",
	"net.ipv4.tcp_fastopen": "0",
}
