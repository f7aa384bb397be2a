//go:build race

package ustack_test

const raceEnabled = true
