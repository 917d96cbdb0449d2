//go:build !race

package proxyclient

const raceEnabled = false
