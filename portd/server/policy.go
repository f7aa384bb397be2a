package server

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/ustack/ustack/hostports"
)

// DefaultPolicy is where portd reads its policy unless told otherwise.
const DefaultPolicy = "/etc/ustack/portd.policy"

// defaultEphemeralLimit is how many ephemeral ports a bare "ephemeral" in a
// rule lets one client hold.
const defaultEphemeralLimit = 1024

// Policy says which users and groups may hold which ports on which
// interfaces, and how much each user may hold at once. Nothing is allowed
// unless a rule allows it; root may hold anything (it could do the same
// without portd).
//
// The file has one rule per line; # starts a comment:
//
//	allow WHO IFACE PROTOS PORTS
//	limit WHO [sessions N] [ports N]
//
// WHO is user:NAME, user:UID, group:NAME, group:GID or * (everyone); IFACE
// an interface name or * (any); PROTOS tcp, udp or tcp,udp; PORTS a
// comma-separated list of ports, ranges (8000-8099) and "ephemeral" or
// "ephemeral:N" (blocks of up to N ports, default 1024, from the host's
// ephemeral range, for outgoing connections; an ephemeral block is held
// for TCP and UDP alike). Ports below 1024 are privileged: a rule grants
// them only by naming them, so a range may not cross from below 1024 to
// above it. A user may open a session on an interface only if an allow
// rule for it names that interface (or *), even one without ports.
//
// A limit rule bounds each user it names, one by one (a group's members
// each get the limit, not the group as a whole): sessions, the sessions
// the user may have open at once; ports, the TCP and UDP ports the user
// may hold at once in all sessions, each counted (an ephemeral block of N
// counts 2N). A user: rule overrides group: rules, which override *; of
// several group: rules the largest value counts; a value a rule leaves
// out is the default (DefaultLimits).
type Policy struct {
	Source string // file name, for messages
	Rules  []Rule
	Limits []LimitRule
}

// Limits bound what one user other than root holds through portd at once.
type Limits struct {
	Sessions int // open sessions
	Ports    int // TCP and UDP ports, each counted
}

// DefaultLimits hold for a user no limit rule names: enough for 16 stacks
// with the default 64 ephemeral ports and as many fixed ports again, and
// at most 2048 of the host's ephemeral ports (28232 by default).
var DefaultLimits = Limits{Sessions: 16, Ports: 4096}

// LimitRule is one "limit" line; a field of Limits below 0 was left out.
type LimitRule struct {
	Line     int
	UID, GID *uint32
	Who      string
	Limits   Limits
}

// Rule is one "allow" line.
type Rule struct {
	Line int
	// Who: one of UID or GID is set; neither means everyone.
	UID, GID *uint32
	Who      string // as written, for messages
	Iface    string // "" is any interface
	Protos   []hostports.Proto
	Ranges   [][2]uint16
	// Ephemeral is the most ports the rule lets a client hold in ephemeral
	// blocks; 0 grants none.
	Ephemeral int
}

// Cred is who a client is, from its socket's peer credentials.
type Cred struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
	PID      int32
}

// LoadPolicy reads the policy file path. A missing file is an error; the
// caller decides whether that matters.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParsePolicy(path, f)
}

// ParsePolicy reads a policy; errors name the source, the line and the
// field at fault.
func ParsePolicy(source string, r io.Reader) (*Policy, error) {
	p := &Policy{Source: source}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "limit" {
			lr, err := parseLimit(fields)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", source, line, err)
			}
			lr.Line = line
			p.Limits = append(p.Limits, lr)
			continue
		}
		rule, err := parseRule(fields)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", source, line, err)
		}
		rule.Line = line
		p.Rules = append(p.Rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return p, nil
}

const (
	ruleSyntax  = "allow WHO IFACE PROTOS PORTS, e.g. allow user:alice eth0 tcp 8080,ephemeral"
	limitSyntax = "limit WHO [sessions N] [ports N], e.g. limit group:users sessions 4 ports 512"
	maxLimit    = 1 << 20
)

func parseRule(f []string) (Rule, error) {
	var r Rule
	if f[0] != "allow" {
		return r, fmt.Errorf("%q: a rule starts with allow or limit (%s; %s)", f[0], ruleSyntax, limitSyntax)
	}
	if len(f) != 5 {
		return r, fmt.Errorf("%d fields, want 5 (%s)", len(f), ruleSyntax)
	}
	if err := r.parseWho(f[1]); err != nil {
		return r, fmt.Errorf("WHO %q: %w", f[1], err)
	}
	if f[2] != "*" {
		if len(f[2]) >= 16 || strings.ContainsAny(f[2], "/:,") {
			return r, fmt.Errorf("IFACE %q: not an interface name (or * for any)", f[2])
		}
		r.Iface = f[2]
	}
	for _, p := range strings.Split(f[3], ",") {
		proto := hostports.Proto(p)
		if proto != hostports.TCP && proto != hostports.UDP {
			return r, fmt.Errorf("PROTOS %q: %q is not tcp or udp", f[3], p)
		}
		if !slices.Contains(r.Protos, proto) {
			r.Protos = append(r.Protos, proto)
		}
	}
	for _, item := range strings.Split(f[4], ",") {
		if err := r.parsePorts(item); err != nil {
			return r, fmt.Errorf("PORTS %q: %w", item, err)
		}
	}
	return r, nil
}

func parseLimit(f []string) (LimitRule, error) {
	lr := LimitRule{Limits: Limits{Sessions: -1, Ports: -1}}
	if len(f) < 4 || len(f)%2 != 0 {
		return lr, fmt.Errorf("%d fields, want 4 or 6 (%s)", len(f), limitSyntax)
	}
	var who Rule
	if err := who.parseWho(f[1]); err != nil {
		return lr, fmt.Errorf("WHO %q: %w", f[1], err)
	}
	lr.UID, lr.GID, lr.Who = who.UID, who.GID, who.Who
	for i := 2; i < len(f); i += 2 {
		var field *int
		switch f[i] {
		case "sessions":
			field = &lr.Limits.Sessions
		case "ports":
			field = &lr.Limits.Ports
		default:
			return lr, fmt.Errorf("%q: want sessions or ports (%s)", f[i], limitSyntax)
		}
		n, err := strconv.Atoi(f[i+1])
		if err != nil || n < 0 || n > maxLimit {
			return lr, fmt.Errorf("%s %q: want a number from 0 to %d", f[i], f[i+1], maxLimit)
		}
		if *field >= 0 {
			return lr, fmt.Errorf("%s given twice (%s)", f[i], limitSyntax)
		}
		*field = n
	}
	return lr, nil
}

func (r *Rule) parseWho(s string) error {
	r.Who = s
	if s == "*" {
		return nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return fmt.Errorf("want user:NAME, user:UID, group:NAME, group:GID or *")
	}
	id, numErr := strconv.ParseUint(name, 10, 32)
	switch kind {
	case "user":
		if numErr != nil {
			u, err := user.Lookup(name)
			if err != nil {
				return fmt.Errorf("no such user")
			}
			id, _ = strconv.ParseUint(u.Uid, 10, 32)
		}
		uid := uint32(id)
		r.UID = &uid
	case "group":
		if numErr != nil {
			g, err := user.LookupGroup(name)
			if err != nil {
				return fmt.Errorf("no such group")
			}
			id, _ = strconv.ParseUint(g.Gid, 10, 32)
		}
		gid := uint32(id)
		r.GID = &gid
	default:
		return fmt.Errorf("%q: want user:, group: or *", kind)
	}
	return nil
}

func (r *Rule) parsePorts(s string) error {
	if rest, ok := strings.CutPrefix(s, "ephemeral"); ok {
		r.Ephemeral = defaultEphemeralLimit
		if rest == "" {
			return nil
		}
		n, err := strconv.Atoi(strings.TrimPrefix(rest, ":"))
		if !strings.HasPrefix(rest, ":") || err != nil || n < 1 || n > 16384 {
			return fmt.Errorf("want ephemeral or ephemeral:N with N from 1 to 16384")
		}
		r.Ephemeral = n
		return nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(lo, 10, 16)
	last, err2 := first, error(nil)
	if isRange {
		last, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil || first == 0 || last < first {
		return fmt.Errorf("want a port (1-65535), a range LOW-HIGH, ephemeral or ephemeral:N")
	}
	if first < 1024 && last >= 1024 {
		return fmt.Errorf("the range crosses 1024: list privileged ports on their own (e.g. 80,443,1024-%d)", last)
	}
	r.Ranges = append(r.Ranges, [2]uint16{uint16(first), uint16(last)})
	return nil
}

// matches reports whether the rule is about c on iface.
func (r *Rule) matches(c Cred, iface string) bool {
	if r.Iface != "" && r.Iface != iface {
		return false
	}
	return whoMatches(r.UID, r.GID, c)
}

func whoMatches(uid, gid *uint32, c Cred) bool {
	switch {
	case uid != nil:
		return *uid == c.UID
	case gid != nil:
		return *gid == c.GID || slices.Contains(c.Groups, *gid)
	}
	return true
}

// MaySession reports whether c may open a session on iface: root may, and
// a user an allow rule for iface (or *) names, whatever its ports.
func (p *Policy) MaySession(c Cred, iface string) bool {
	if c.UID == 0 {
		return true
	}
	for i := range p.Rules {
		if p.Rules[i].matches(c, iface) {
			return true
		}
	}
	return false
}

// LimitsFor returns what c may hold at once, and the rule that says so
// ("" for the defaults). Root has no limits but portd's own (ok false).
func (p *Policy) LimitsFor(c Cred) (lim Limits, rule string, ok bool) {
	if c.UID == 0 {
		return Limits{}, "", false
	}
	// The most specific level that has a matching rule decides: user:,
	// then group:, then *.
	for _, level := range []func(*LimitRule) bool{
		func(r *LimitRule) bool { return r.UID != nil },
		func(r *LimitRule) bool { return r.GID != nil },
		func(r *LimitRule) bool { return r.UID == nil && r.GID == nil },
	} {
		lim, found := Limits{Sessions: -1, Ports: -1}, false
		var lines []string
		for i := range p.Limits {
			r := &p.Limits[i]
			if !level(r) || !whoMatches(r.UID, r.GID, c) {
				continue
			}
			found = true
			lim.Sessions = max(lim.Sessions, r.Limits.Sessions)
			lim.Ports = max(lim.Ports, r.Limits.Ports)
			lines = append(lines, fmt.Sprintf("%s:%d", p.Source, r.Line))
		}
		if found {
			if lim.Sessions < 0 {
				lim.Sessions = DefaultLimits.Sessions
			}
			if lim.Ports < 0 {
				lim.Ports = DefaultLimits.Ports
			}
			return lim, strings.Join(lines, ", "), true
		}
	}
	return DefaultLimits, "", true
}

// Allows reports whether c may hold port of proto on iface.
func (p *Policy) Allows(c Cred, iface string, proto hostports.Proto, port uint16) bool {
	if c.UID == 0 {
		return true
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.matches(c, iface) || !slices.Contains(r.Protos, proto) {
			continue
		}
		for _, rg := range r.Ranges {
			if rg[0] <= port && port <= rg[1] {
				return true
			}
		}
	}
	return false
}

// EphemeralLimit is how many ports c may hold in ephemeral blocks on iface.
func (p *Policy) EphemeralLimit(c Cred, iface string) int {
	if c.UID == 0 {
		return 16384
	}
	n := 0
	for i := range p.Rules {
		if r := &p.Rules[i]; r.matches(c, iface) {
			n = max(n, r.Ephemeral)
		}
	}
	return n
}
