package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// ProxyStats is the proxy process's memory and threads before the tunnels,
// with them open, and after they closed. Goroutines are not visible from
// outside the process.
type ProxyStats struct {
	PID           int     `json:"pid"`
	RSSBeforeKiB  int64   `json:"rss_before_kib"`
	RSSOpenKiB    int64   `json:"rss_open_kib"`
	RSSAfterKiB   int64   `json:"rss_after_kib"`
	ThreadsBefore int64   `json:"threads_before"`
	ThreadsOpen   int64   `json:"threads_open"`
	ThreadsAfter  int64   `json:"threads_after"`
	KiBPerTunnel  float64 `json:"kib_per_tunnel"`  // (open − before) ÷ tunnels open
	Error         string  `json:"error,omitempty"` // a reading that failed, such as for want of file descriptors
}

// procStatus is what the report reads from /proc/PID/status.
type procStatus struct{ rssKiB, threads int64 }

type procStats struct {
	before, open, after procStatus
	errOpen, errAfter   error
}

func (s procStats) summary(pid int, tunnels int64) *ProxyStats {
	p := &ProxyStats{
		PID:          pid,
		RSSBeforeKiB: s.before.rssKiB, RSSOpenKiB: s.open.rssKiB, RSSAfterKiB: s.after.rssKiB,
		ThreadsBefore: s.before.threads, ThreadsOpen: s.open.threads, ThreadsAfter: s.after.threads,
	}
	if err := errors.Join(s.errOpen, s.errAfter); err != nil {
		p.Error = err.Error()
	}
	if tunnels > 0 && s.errOpen == nil {
		p.KiBPerTunnel = float64(s.open.rssKiB-s.before.rssKiB) / float64(tunnels)
	}
	return p
}

// readProcStatus reads VmRSS and Threads of process pid.
func readProcStatus(pid int) (procStatus, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procStatus{}, fmt.Errorf("reading the proxy's memory: %w", err)
	}
	return parseProcStatus(b)
}

func parseProcStatus(b []byte) (procStatus, error) {
	var s procStatus
	var rss, threads bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		fields := bytes.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(string(fields[0]), 10, 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "VmRSS":
			s.rssKiB, rss = n, true
		case "Threads":
			s.threads, threads = n, true
		}
	}
	if !rss || !threads {
		return s, fmt.Errorf("no VmRSS or Threads in /proc status")
	}
	return s, nil
}
