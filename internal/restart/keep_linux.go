package restart

import (
	"os"

	"golang.org/x/sys/unix"
)

// anonymousFile is a file with no name in any file system, in memory only.
func anonymousFile(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate("masqued-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}
