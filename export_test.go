package ustack

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/waiter"
)

// SetObservers turns the TCP probe and the NIC tap of stacks built from
// now on on or off, and returns a function that restores the setting.
func SetObservers(on bool) (restore func()) {
	old := installObservers
	installObservers = on
	return func() { installObservers = old }
}

// PartialDeadline is the share of a dial's time one address gets.
var PartialDeadline = partialDeadline

// BlockedReading reports whether a call is waiting on x, a listener or a
// packet conn of a stack, for something to read: an Accept, a ReadFrom.
// Tests that close x or write to it under such a call wait for this.
func BlockedReading(x any) bool {
	switch x := x.(type) {
	case *listener:
		return x.wq.Events()&waiter.ReadableEvents != 0
	case *packetConn:
		return x.wq.Events()&waiter.ReadableEvents != 0
	}
	panic(fmt.Sprintf("BlockedReading of a %T", x))
}
