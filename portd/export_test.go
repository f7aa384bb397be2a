package portd

// The end-to-end tests (package portd_test) forge frames with these.
var (
	UDPFrameForTest       = UDPFrame
	ICMPErrorFrameForTest = ICMPErrorFrame
	TCPFrameForTest       = TCPFrame
	WithVnetForTest       = WithVnet
)
