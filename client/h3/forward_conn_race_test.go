//go:build race

package h3

// raceEnabled: under the race detector sync.Pool drops items on purpose, so
// allocation counts of pooled paths mean nothing.
const raceEnabled = true
