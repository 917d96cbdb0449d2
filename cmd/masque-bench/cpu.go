package main

import (
	"errors"
	"os"
	"time"

	"github.com/masqued/masqued/internal/proc"
)

// cpuUse is the CPU time, user and system, that the processes of one
// download spent: our client (the bench process) or masque-go's client, the
// proxy, and the origins. Throughput on a shared machine depends on what
// else runs; CPU per byte is what a proxy costs to run, and it separates
// the proxy's share from the client's.
type cpuUse struct {
	measured               bool // false with -inprocess: one process does it all
	client, proxy, origins time.Duration
}

func (u *cpuUse) add(o cpuUse) {
	u.measured = o.measured
	u.client += o.client
	u.proxy += o.proxy
	u.origins += o.origins
}

// cpuReading is the CPU time used so far by the bench, c's proxy (zero when
// direct) and the origins.
type cpuReading struct {
	measured             bool
	self, proxy, origins time.Duration
}

func (e *env) readCPU(c benchCase) (cpuReading, error) {
	if e.origins == nil {
		return cpuReading{}, nil
	}
	r := cpuReading{measured: true}
	var errs [3]error
	r.self, errs[0] = proc.CPUTime(os.Getpid())
	if p := e.proxies[c.via]; p != nil {
		r.proxy, errs[1] = p.proc.CPUTime()
	}
	r.origins, errs[2] = e.origins.CPUTime()
	return r, errors.Join(errs[:]...)
}

// since is the CPU each process spent from r0 to r.
func (r cpuReading) since(r0 cpuReading) cpuUse {
	return cpuUse{measured: r.measured, client: r.self - r0.self, proxy: r.proxy - r0.proxy, origins: r.origins - r0.origins}
}
