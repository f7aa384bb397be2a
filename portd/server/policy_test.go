package server

import (
	"os"
	"strings"
	"testing"

	"github.com/ustack/ustack/hostports"
)

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"deny user:1 eth0 tcp 80", `p:1: "deny": a rule starts with allow`},
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
