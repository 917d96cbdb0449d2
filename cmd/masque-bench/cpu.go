package main

import (
	"errors"
	"os"
	"time"

	"github.com/masqued/masqued/internal/proc"
)

// cpuUse is the CPU time, user and system, that the processes of one
// download spent: our client (the bench process) or masque-go's client, the
// relay of a two-hop case, the proxy (the egress, in a two-hop case), and
// the origins. Throughput on a shared machine depends on what
// else runs; CPU per byte is what a proxy costs to run, and it separates
// the proxy's share from the client's.
type cpuUse struct {
	measured                      bool // false with -inprocess: one process does it all
	client, relay, proxy, origins time.Duration
}

func (u *cpuUse) add(o cpuUse) {
	u.measured = o.measured
	u.client += o.client
	u.relay += o.relay
	u.proxy += o.proxy
	u.origins += o.origins
}

// cpuReading is the CPU time used so far by the bench, c's relay (zero but
// for a two-hop case), c's proxy (zero when direct) and the origins.
type cpuReading struct {
	measured                    bool
	self, relay, proxy, origins time.Duration
}

func (e *env) readCPU(c benchCase) (cpuReading, error) {
	if e.origins == nil {
		return cpuReading{}, nil
	}
	r := cpuReading{measured: true}
	var errs [4]error
	r.self, errs[0] = proc.CPUTime(os.Getpid())
	if c.relay {
		r.relay, errs[1] = e.relay.proc.CPUTime()
	}
	if p := e.proxies[c.via]; p != nil {
		r.proxy, errs[2] = p.proc.CPUTime()
	}
	r.origins, errs[3] = e.origins.CPUTime()
	return r, errors.Join(errs[:]...)
}

// since is the CPU each process spent from r0 to r.
func (r cpuReading) since(r0 cpuReading) cpuUse {
	return cpuUse{measured: r.measured, client: r.self - r0.self, relay: r.relay - r0.relay, proxy: r.proxy - r0.proxy, origins: r.origins - r0.origins}
}
