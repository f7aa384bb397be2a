// Package source says which netstack source a binary was built from: the
// pinned gVisor module with ustack's patches (netstack/patches), or that
// plus a developer's change to the copy scripts/netstack.sh made. The copy's
// stamp package embeds its pkg/tcpip and the files' hashes as the copy was
// made, so the answer comes from the compiled source itself, however the
// binary was built.
package source

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	gvisor "gvisor.dev/gvisor"
)

// Stamp describes the compiled netstack.
type Stamp struct {
	Patches []string // ustack's patches, in the order applied
	Changed []string // files of pkg/tcpip changed after the copy was made
	// Hash identifies the change (empty when Changed is): the first 16 hex
	// digits of SHA-256 over "path sha256\n" per changed file, sorted by
	// path, "-" for a deleted file; scripts/netstack.sh hash prints the same.
	Hash string
}

// Modified reports whether the netstack differs from pinned + patches.
func (s Stamp) Modified() bool { return len(s.Changed) > 0 }

// String is one line for ustack version.
func (s Stamp) String() string {
	base := fmt.Sprintf("pinned + %d patches", len(s.Patches))
	if len(s.Patches) > 0 {
		base += " (" + strings.Join(s.Patches, ", ") + ")"
	}
	if !s.Modified() {
		return base + ", unmodified"
	}
	return fmt.Sprintf("%s, modified %s (%s)", base, s.Hash, strings.Join(s.Changed, ", "))
}

// Read compares the embedded source with the manifest.
func Read() (Stamp, error) {
	return read(gvisor.Source, gvisor.Root, gvisor.Manifest, gvisor.Patches)
}

func read(src fs.FS, root, manifest string, patches []string) (Stamp, error) {
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(manifest), "\n") {
		if f, sum, ok := strings.Cut(line, " "); ok {
			want[f] = sum
		}
	}
	have := map[string]string{}
	err := fs.WalkDir(src, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		have[p] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		return Stamp{}, fmt.Errorf("reading the embedded netstack source: %w", err)
	}
	var lines []string
	st := Stamp{Patches: patches}
	for f, sum := range have {
		if want[f] != sum {
			lines = append(lines, f+" "+sum)
			st.Changed = append(st.Changed, f)
		}
	}
	for f := range want {
		if _, ok := have[f]; !ok {
			lines = append(lines, f+" -")
			st.Changed = append(st.Changed, f)
		}
	}
	if len(lines) == 0 {
		return st, nil
	}
	sort.Strings(lines)
	sort.Strings(st.Changed)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n") + "\n"))
	st.Hash = hex.EncodeToString(h[:])[:16]
	for i, f := range st.Changed {
		st.Changed[i] = strings.TrimPrefix(f, path.Clean(root)+"/")
	}
	return st, nil
}
