package source

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"testing/fstest"
)

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestRead: unchanged, changed, added and deleted files against the
// manifest, and the hash scripts/netstack.sh computes the same way: the
// first 16 hex digits of SHA-256 over "path sha256\n" per changed file,
// sorted, "-" for a deleted one.
func TestRead(t *testing.T) {
	manifest := "pkg/tcpip/a.go " + sum("a") + "\npkg/tcpip/t/b.go " + sum("b") + "\n"
	tests := []struct {
		name    string
		files   map[string]string
		changed []string
		lines   string
	}{
		{"unchanged", map[string]string{"pkg/tcpip/a.go": "a", "pkg/tcpip/t/b.go": "b"}, nil, ""},
		{"changed", map[string]string{"pkg/tcpip/a.go": "a", "pkg/tcpip/t/b.go": "b2"},
			[]string{"t/b.go"}, "pkg/tcpip/t/b.go " + sum("b2") + "\n"},
		{"added and deleted", map[string]string{"pkg/tcpip/a.go": "a", "pkg/tcpip/c.go": "c"},
			[]string{"c.go", "t/b.go"}, "pkg/tcpip/c.go " + sum("c") + "\npkg/tcpip/t/b.go -\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for p, c := range tc.files {
				fsys[p] = &fstest.MapFile{Data: []byte(c)}
			}
			st, err := read(fsys, "pkg/tcpip", manifest, []string{"0001-x.patch"})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(st.Changed, ",") != strings.Join(tc.changed, ",") {
				t.Errorf("changed %v, want %v", st.Changed, tc.changed)
			}
			want := ""
			if tc.lines != "" {
				want = sum(tc.lines)[:16]
			}
			if st.Hash != want {
				t.Errorf("hash %q, want %q", st.Hash, want)
			}
			if st.Modified() != (want != "") || !strings.HasPrefix(st.String(), "pinned + 1 patches (0001-x.patch), ") {
				t.Errorf("String() = %q", st.String())
			}
		})
	}
}
