package server

import (
	"os"
	"strings"
	"testing"

	"github.com/ustack/ustack/hostports"
)

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"deny user:1 eth0 tcp 80", `p:1: "deny": a rule starts with allow or limit`},
		{"limit user:1", "2 fields, want 4 or 6"},
		{"limit user:1 sessions", "3 fields, want 4 or 6"},
		{"limit user:1 frames 4", `"frames": want sessions or ports`},
		{"limit user:1 sessions -1", `sessions "-1": want a number from 0 to 1048576`},
		{"limit user:1 ports x", `ports "x": want a number`},
		{"limit user:1 ports 4 ports 5", "ports given twice"},
		{"limit usr:1 ports 4", `WHO "usr:1"`},
		{"allow user:1 eth0 tcp", "p:1: 4 fields, want 5"},
		{"\n# c\nallow usr:1 eth0 tcp 80", `p:3: WHO "usr:1": "usr": want user:, group: or *`},
		{"allow user:no-such-user-here eth0 tcp 80", `WHO "user:no-such-user-here": no such user`},
		{"allow group:no-such-group-here eth0 tcp 80", "no such group"},
		{"allow user:1 eth0/1 tcp 80", `IFACE "eth0/1": not an interface name`},
		{"allow user:1 eth0 sctp 80", `PROTOS "sctp": "sctp" is not tcp or udp`},
		{"allow user:1 eth0 tcp 0", `PORTS "0": want a port`},
		{"allow user:1 eth0 tcp 9-3", `PORTS "9-3"`},
		{"allow user:1 eth0 tcp 70000", `PORTS "70000"`},
		{"allow user:1 eth0 tcp 1-65535", "the range crosses 1024"},
		{"allow user:1 eth0 tcp ephemeral:0", "ephemeral:N with N from 1 to 16384"},
		{"allow user:1 eth0 tcp ephemeralx", "ephemeral:N"},
	} {
		_, err := ParsePolicy("p", strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.text, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error is more than one line: %q", tc.text, err)
		}
	}
}

func TestPolicyAllows(t *testing.T) {
	pol, err := ParsePolicy("p", strings.NewReader(`
# web servers
allow user:1000 eth0 tcp 8000-8099,443   # alice
allow group:2000 * udp 5353,ephemeral:256
allow * lo tcp 9000
`))
	if err != nil {
		t.Fatal(err)
	}
	alice := Cred{UID: 1000, GID: 1000}
	bob := Cred{UID: 1001, GID: 1001, Groups: []uint32{2000}}
	carol := Cred{UID: 1002, GID: 2000}
	root := Cred{}
	for _, tc := range []struct {
		who   string
		c     Cred
		iface string
		proto hostports.Proto
		port  uint16
		want  bool
	}{
		{"alice in range", alice, "eth0", hostports.TCP, 8050, true},
		{"alice privileged named", alice, "eth0", hostports.TCP, 443, true},
		{"alice privileged not named", alice, "eth0", hostports.TCP, 80, false},
		{"alice udp", alice, "eth0", hostports.UDP, 8050, false},
		{"alice other interface", alice, "eth1", hostports.TCP, 8050, false},
		{"alice out of range", alice, "eth0", hostports.TCP, 8100, false},
		{"bob by supplementary group", bob, "eth1", hostports.UDP, 5353, true},
		{"carol by primary group", carol, "eth0", hostports.UDP, 5353, true},
		{"bob not alice's", bob, "eth0", hostports.TCP, 8050, false},
		{"everyone on lo", carol, "lo", hostports.TCP, 9000, true},
		{"root anything", root, "eth9", hostports.TCP, 22, true},
	} {
		if got := pol.Allows(tc.c, tc.iface, tc.proto, tc.port); got != tc.want {
			t.Errorf("%s: Allows = %v, want %v", tc.who, got, tc.want)
		}
	}
	if n := pol.EphemeralLimit(bob, "eth0"); n != 256 {
		t.Errorf("bob's ephemeral limit %d, want 256", n)
	}
	if n := pol.EphemeralLimit(alice, "eth0"); n != 0 {
		t.Errorf("alice's ephemeral limit %d, want 0", n)
	}
}

// TestSamplePolicy: the shipped sample parses.
func TestSamplePolicy(t *testing.T) {
	f, err := os.Open("../../contrib/portd.policy.sample")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := ParsePolicy("sample", f)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) == 0 {
		t.Fatal("the sample has no rules")
	}
}

func TestPolicyLimits(t *testing.T) {
	pol, err := ParsePolicy("p", strings.NewReader(`
allow group:2000 eth0 tcp ephemeral
limit * sessions 8
limit group:2000 ports 100
limit group:2001 ports 300 sessions 2
limit user:1003 sessions 1
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who  string
		c    Cred
		want Limits
		rule string
	}{
		{"no group, by *", Cred{UID: 1000, GID: 1000}, Limits{Sessions: 8, Ports: DefaultLimits.Ports}, "p:3"},
		{"one group", Cred{UID: 1001, GID: 2000}, Limits{Sessions: DefaultLimits.Sessions, Ports: 100}, "p:4"},
		{"two groups: the larger of each", Cred{UID: 1002, GID: 1002, Groups: []uint32{2000, 2001}}, Limits{Sessions: 2, Ports: 300}, "p:4, p:5"},
		{"the user's own over the group's", Cred{UID: 1003, GID: 2000}, Limits{Sessions: 1, Ports: DefaultLimits.Ports}, "p:6"},
	} {
		got, rule, limited := pol.LimitsFor(tc.c)
		if got != tc.want || rule != tc.rule || !limited {
			t.Errorf("%s: %+v by %q (limited %v), want %+v by %q", tc.who, got, rule, limited, tc.want, tc.rule)
		}
	}
	if _, _, limited := pol.LimitsFor(Cred{}); limited {
		t.Error("root is limited")
	}
	empty := &Policy{Source: "empty"}
	if got, rule, _ := empty.LimitsFor(Cred{UID: 5}); got != DefaultLimits || rule != "" {
		t.Errorf("no limit rule: %+v by %q, want the defaults", got, rule)
	}
	for _, tc := range []struct {
		c     Cred
		iface string
		want  bool
	}{
		{Cred{UID: 1001, GID: 2000}, "eth0", true},
		{Cred{UID: 1001, GID: 2000}, "eth1", false},
		{Cred{UID: 1000, GID: 1000}, "eth0", false},
		{Cred{}, "eth1", true},
	} {
		if got := pol.MaySession(tc.c, tc.iface); got != tc.want {
			t.Errorf("MaySession(%+v, %s) = %v, want %v", tc.c, tc.iface, got, tc.want)
		}
	}
	if empty.MaySession(Cred{UID: 5}, "eth0") {
		t.Error("an empty policy lets a user open a session")
	}
}
