//go:build !race

package proxyconn

const raceEnabled = false
