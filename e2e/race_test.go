//go:build race

package e2e

// raceEnabled builds the example apps with the race detector too.
const raceEnabled = true
