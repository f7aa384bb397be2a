package growstack

// grow has a frame of Size bytes and does nothing else (grow_amd64.s).
//
//go:noescape
func grow()
