package lab

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a mistake in a topology file: the file, the line, the field's
// path (links[2].endpoints[0]) and what is wrong, with the fix.
type Error struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Path == "" {
		return where + ": " + e.Msg
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Path, e.Msg)
}

// decoder walks a YAML tree, keeping the file name for errors.
type decoder struct{ file string }

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// entry is one key and value of a mapping.
type entry struct {
	key   string
	keyAt *yaml.Node
	value *yaml.Node
}

// resolve follows an alias (*name) to its node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// mapping returns n's entries in file order. A key not in allowed, or one
// given twice, is an error that lists what is allowed.
func (d *decoder) mapping(n *yaml.Node, path string, allowed ...string) ([]entry, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		if n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil, nil
		}
		return nil, d.errf(n, path, "want a mapping of keys to values, found %s", describe(n))
	}
	seen := map[string]bool{}
	var out []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, d.errf(k, path, "a key must be a plain value, found %s", describe(k))
		}
		sub := join(path, k.Value)
		if len(allowed) > 0 && !contains(allowed, k.Value) {
			return nil, d.errf(k, sub, "unknown field (known: %s)", strings.Join(sorted(allowed), ", "))
		}
		if seen[k.Value] {
			return nil, d.errf(k, sub, "given twice (keep one)")
		}
		seen[k.Value] = true
		out = append(out, entry{key: k.Value, keyAt: k, value: v})
	}
	return out, nil
}

// sequence returns n's items; a single scalar counts as a list of one.
func (d *decoder) sequence(n *yaml.Node, path string) ([]*yaml.Node, error) {
	n = resolve(n)
	switch {
	case n == nil:
		return nil, nil
	case n.Kind == yaml.SequenceNode:
		return n.Content, nil
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return nil, nil
	case n.Kind == yaml.ScalarNode:
		return []*yaml.Node{n}, nil
	}
	return nil, d.errf(n, path, "want a list, found %s", describe(n))
}

// scalar returns n's text.
func (d *decoder) scalar(n *yaml.Node, path string) (string, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		return "", d.errf(n, path, "want a single value, found %s", describe(n))
	}
	return n.Value, nil
}

func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == "!!null":
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sorted(list []string) []string {
	out := append([]string(nil), list...)
	sort.Strings(out)
	return out
}
