//go:build !linux

package restart

import "os"

// anonymousFile is a file with no name in any file system: a temporary file
// removed at once.
func anonymousFile(name string) (*os.File, error) {
	f, err := os.CreateTemp("", "masqued-"+name+"-*")
	if err != nil {
		return nil, err
	}
	return f, os.Remove(f.Name())
}
