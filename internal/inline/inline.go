// Package inline runs work that a netstack callback finds ready on a
// goroutine that is already running, instead of waking another one.
//
// netstack tells a relay that its endpoint has data (or room) through a
// waiter callback, which runs with the endpoint's lock held and so cannot
// read or write the endpoint itself. The relay used to start (or wake) a
// goroutine there, and on a machine where waking a thread goes through the
// hypervisor that hand-off was most of an exchange's cost. A goroutine
// that is about to call into netstack (a relay that writes what it read
// from a descriptor into an endpoint) brackets the call with Begin and
// End; a callback that runs meanwhile, on that goroutine or any other,
// posts its work, and End runs it once netstack has returned and its locks
// are free. A request then goes from the program's socket through both
// stacks to the host socket on the one goroutine the poller woke.
//
// Posted work must not wait: it runs on someone else's goroutine. A relay
// direction run this way moves what is there and then leaves its wait to
// the callback (or the poller), as it does when it has no goroutine.
package inline

import (
	"sync"
	"sync/atomic"
)

// MaxChunk is the largest write whose follow-up work a relay has run
// inline. A larger one is a stream's: its follow-up (the other stack's
// relay writing to its descriptor) then runs on a goroutine of its own,
// beside the next read, so that a bulk transfer keeps both CPUs busy
// instead of doing every step of it on one goroutine.
const MaxChunk = 16 << 10

var (
	mu     sync.Mutex
	active atomic.Int32 // goroutines between Begin and the end of End's draining; changed under mu
	queue  []func()     // posted; queue[head:] not yet taken
	head   int
)

// Begin marks the calling goroutine as one that will run posted work: it
// must call End.
func Begin() {
	mu.Lock()
	active.Add(1)
	mu.Unlock()
}

// Active reports whether some goroutine is between Begin and End. netstack
// asks it for every segment it could process on the goroutine that
// delivers it (tcpip.TCPInlineProcessingOption): yes for a relay's small
// write, whose follow-up runs to completion; no for a bulk transfer,
// whose segments the processor goroutines take on beside the writer.
func Active() bool { return active.Load() > 0 }

// Post queues f for a goroutine between Begin and End and reports whether
// it did; false means none is there to run it, and the caller runs it its
// own way (a goroutine of its own).
func Post(f func()) bool {
	mu.Lock()
	defer mu.Unlock()
	if active.Load() == 0 {
		return false
	}
	queue = append(queue, f)
	return true
}

// End runs posted work, including work posted while it runs, until none
// is left, and then ends the caller's Begin. The last look at the queue
// and the end are one step under the lock, so nothing posted is left
// without a goroutine to run it.
func End() {
	for {
		mu.Lock()
		if head == len(queue) {
			queue, head = queue[:0], 0 // the array is kept for the next posts
			active.Add(-1)
			mu.Unlock()
			return
		}
		f := queue[head]
		queue[head] = nil
		head++
		mu.Unlock()
		f()
	}
}
