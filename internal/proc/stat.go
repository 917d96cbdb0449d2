package proc

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// clockTick is Linux's USER_HZ, the unit of the CPU times in /proc.
const clockTick = 10 * time.Millisecond

// parseStatCPU returns utime + stime from the contents of /proc/PID/stat.
// The second field, the command name in parentheses, may itself hold spaces
// and parentheses, so the fields are counted from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc: stat %.40q: no command name", b)
	}
	// After the name: state (field 3), ..., utime (14), stime (15).
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("proc: stat %.40q: %d fields after the name, want 13 or more", b, len(f))
	}
	// Each time must fit a Duration, and so must their sum: 2^62 ns is
	// 146 years.
	const maxTicks = (1 << 62) / int64(clockTick)
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil || n < 0 || n > maxTicks {
			return 0, fmt.Errorf("proc: stat: CPU time %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}
