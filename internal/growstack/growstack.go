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
// On amd64 it is a function in assembly whose frame is Size bytes that it
// never writes: its prologue finds too little stack and has the runtime
// grow it, and that is all it does. A Go function needs a local array for
// such a frame, and Go zeroes it: 32 KiB written at each goroutine's start
// was 5 % of the daemon's CPU under nginx answering `Connection: close`
// requests.
func Grow() { grow() }
