//go:build race

package drill

const raceEnabled = true
