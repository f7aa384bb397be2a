package server

// The end-to-end tests (package server_test) forge frames with these.
var (
	UDPFrameForTest        = UDPFrame
	ICMPErrorFrameForTest  = ICMPErrorFrame
	TCPFrameForTest        = TCPFrame
	WithVnetForTest        = WithVnet
	ICMP6FrameForTest      = ICMP6Frame
	NDPForTest             = NDP
	LLAForTest             = LLA
	WithIPv4OptionsForTest = withIPv4Options
	WithBadIPv4SumForTest  = WithBadIPv4Sum
	WithBadL4SumForTest    = WithBadL4Sum
)

// SetOpenHookForTest runs f as each session's set-up begins (nil: nothing).
func SetOpenHookForTest(f func()) {
	if f == nil {
		openHook.Store(nil)
		return
	}
	openHook.Store(&f)
}

// SetReleaseHookForTest runs f as each session's release begins, once it
// has left the holders (nil: nothing).
func SetReleaseHookForTest(f func()) {
	if f == nil {
		releaseHook.Store(nil)
		return
	}
	releaseHook.Store(&f)
}
