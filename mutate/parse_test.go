package mutate

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: String of the rule, "" when it is in
	}{
		{"ack-division=4", ""},
		{"ACK-DIVISION 4", "ack-division=4"},
		{"dupack=3 dst 10.0.9.0/24", "dst 10.0.9.0/24 dupack=3"},
		{"optimistic-ack=8", ""},
		{"drop tcp dport 80 flags S prob 50%", "tcp dport 80 flags S drop prob 50%"},
		{"drop tcp flags S/SA", "tcp flags S/SA drop"},
		{"in delay 50ms", ""},
		{"udp sport 53 duplicate 2 prob 1.5%", ""},
		{"tcp src fd09::1 port 8000-8080 rewrite ttl=1 window=0 syn=1", "tcp src fd09::1/128 port 8000-8080 rewrite ttl=1 window=0 syn=1"},
		{"rewrite ttl=1", ""},
		{"flags R drop", "tcp flags R drop"},
		{"seq 100-200 drop", "tcp seq 100-200 drop"},
		{"inject rst dport 443", "tcp dport 443 inject rst"},
		{"icmp drop", ""},
	} {
		r, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		want := tc.want
		if want == "" {
			want = tc.in
		}
		if got := r.String(); got != want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, want)
		}
		again, err := Parse(r.String())
		if err != nil || again.String() != r.String() {
			t.Errorf("%q does not parse back: %v", r.String(), err)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("Parse(%q) is not valid: %v", tc.in, err)
		}
	}
}

// TestParseErrors: one line naming the word at fault and the fix.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty rule"},
		{"frobnicate", `unknown word "frobnicate"`},
		{"tcp dport 80", "has no action (add one"},
		{"ack-division=1", "ack-division \"1\" is not a whole number from 2 to 64"},
		{"ack-division", "needs a number"},
		{"dupack=x", `dupack "x"`},
		{"in ack-division=4", "drop \"in\""},
		{"udp dupack=3", "applies to TCP"},
		{"drop prob 50", "write e.g. prob 50%"},
		{"drop prob 150%", "from 0% to 100%"},
		{"delay 5", "write e.g. delay 50ms"},
		{"drop dport 80", "add tcp or udp"},
		{"drop tcp dport 70000", "from 0 to 65535"},
		{"drop tcp dport 90-80", "dport \"90-80\""},
		{"drop src 10.0.0.300", "src \"10.0.0.300\" is not an address"},
		{"drop src 10.0.0.1 dst fd00::1", "different families"},
		{"drop tcp flags X", `"X" is not a TCP flag letter`},
		{"drop tcp flags SA/S", "must be among those after"},
		{"drop duplicate 1", "a rule has one action"},
		{"rewrite", "needs FIELD=VALUE"},
		{"rewrite mss=5", `unknown field "mss"`},
		{"rewrite ttl=300", "from 0 to 255"},
		{"udp rewrite window=1", "rewrite window changes TCP"},
		{"inject syn", "only inject rst"},
		{"drop=1", "drop takes no value"},
	} {
		_, err := Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q) = nil error, want %q", tc.in, tc.want)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("Parse(%q) = %q, want one line containing %q", tc.in, msg, tc.want)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts is valid and reads
// back the same.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"ack-division=4", "drop tcp dport 80 flags S prob 50%", "rewrite ttl=1 window=0", "in delay 5ms", "tcp seq 1-2 flags S/SA dupack 3", "optimistic-ack=2 src 10.0.0.0/8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted an invalid rule: %v", s, err)
		}
		again, err := Parse(r.String())
		if err != nil || again.String() != r.String() {
			t.Fatalf("Parse(%q).String() = %q does not read back: %v", s, r.String(), err)
		}
	})
}
