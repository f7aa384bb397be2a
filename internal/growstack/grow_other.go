//go:build !amd64

package growstack

// grow needs Size bytes of frame; elsewhere than on amd64 a local array
// makes it, at the price of zeroing it.
//
//go:noinline
func grow() {
	var room [Size]byte
	_ = touch(room[:])
}

// touch keeps room from being optimised away. It only reads: room does not
// escape, so it stays on the stack, and concurrent grows share nothing.
//
//go:noinline
func touch(b []byte) byte { return b[len(b)-1] }
