//go:build race

package netview_test

const raceEnabled = true
