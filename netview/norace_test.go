//go:build !race

package netview_test

const raceEnabled = false
