package control

// RemoveStale removes the socket and lock file that a stack called name
// left behind when it died (SIGKILL), as List does for every dead stack.
// It leaves a live stack's alone.
func RemoveStale(name string) {
	if !ValidName(name) {
		return
	}
	removeIfDead(Dir(), name, SocketPath(name))
}
