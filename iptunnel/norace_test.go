//go:build !race

package iptunnel

const raceEnabled = false
