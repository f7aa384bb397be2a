package observe

// Kept is how many connections the hub keeps a state for.
func (h *Hub) Kept() int {
	n := 0
	h.latest.Range(func(_, _ any) bool { n++; return true })
	return n
}
