package ustack

// SetObservers turns the TCP probe and the NIC tap of stacks built from
// now on on or off, and returns a function that restores the setting.
func SetObservers(on bool) (restore func()) {
	old := installObservers
	installObservers = on
	return func() { installObservers = old }
}

// PartialDeadline is the share of a dial's time one address gets.
var PartialDeadline = partialDeadline
