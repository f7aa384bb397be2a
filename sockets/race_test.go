//go:build race

package sockets_test

const raceEnabled = true
