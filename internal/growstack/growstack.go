// Package growstack grows a new goroutine's stack before it goes deep.
//
// A goroutine starts with a small stack, and Go doubles it by copying each
// time a call runs out of room. A goroutine that sends a segment through
// netstack into the in-memory link and on into the other stack goes some
// 100 frames deep, so it grows four or five times, each copy walking every
// frame already on the stack: a profile of connections opened and closed
// one after another under `ustack run` spent 15 % of the daemon's time
// there. Growing once at the start copies an almost empty stack instead.
package growstack

// Size is the stack room Grow makes: enough for netstack's deepest paths
// seen (a segment sent, delivered inline through the link into the other
// stack and answered there).
const Size = 32 << 10

// Grow makes room for Size bytes of stack below its caller, while the
// stack is still shallow and cheap to copy. Call it first thing in a
// goroutine that is about to call into netstack.
//
//go:noinline
func Grow() {
	var room [Size]byte
	_ = touch(room[:])
}

// touch keeps room from being optimised away. It only reads: room does not
// escape, so it stays on the stack, and concurrent Grows share nothing.
//
//go:noinline
func touch(b []byte) byte { return b[len(b)-1] }
