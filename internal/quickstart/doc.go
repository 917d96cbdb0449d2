// Package quickstart holds no code, only the test that keeps README.md's
// Quick start honest: it runs the Quick start's commands as a new user would
// (built programs in place of `go run`, a temporary HOME, free ports in
// place of the fixed ones) and compares what they print with the sample
// outputs beside them, so that a changed message or flag shows up as a
// failing test rather than as a README that misleads.
//
// README marks the blocks it checks (and the table of client errors) with an HTML comment before them,
// `<!-- quickstart: NAME -->`, which Markdown renders as nothing. Commands
// that need the internet say so in a trailing comment ("needs the internet")
// and are not run.
package quickstart
