package control

import "strings"

// StackName turns a name as commands take it into the stack's name: a lab
// node is written LAB/NODE and its socket is LAB.NODE (lab and node names
// have no dots, so the mapping is one to one); any other name is itself.
func StackName(arg string) string {
	lab, node, ok := strings.Cut(arg, "/")
	if !ok || lab == "" || node == "" || strings.Contains(node, "/") || strings.Contains(lab, ".") || strings.Contains(node, ".") {
		return arg
	}
	return lab + "." + node
}
