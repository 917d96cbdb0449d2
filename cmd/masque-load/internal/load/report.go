package load

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a run's result. Latencies are in milliseconds; in open loop they
// count from each operation's intended start (see schedule).
type Report struct {
	Name      string  `json:"name"`
	Mode      Mode    `json:"mode"`
	UDP       bool    `json:"udp_tunnels,omitempty"` // setup and idle: CONNECT-UDP`
	Conns     int     `json:"conns"`
	Tunnels   int     `json:"tunnels_per_conn"`
	Rate      float64 `json:"rate,omitempty"` // 0: closed loop
	Warmup    float64 `json:"warmup_s"`
	Duration  float64 `json:"duration_s"` // measured, after warm-up
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_s"`
	Bytes     int64   `json:"bytes"`
	Mbps      float64 `json:"mbit_per_s"`
	Errors    int64   `json:"errors"`
	OpenAtEnd int64   `json:"open_at_end"` // tunnels open when the time was up

	Connect Latency `json:"connect"`
	Setup   Latency `json:"setup"`
	Op      Latency `json:"op"` // tcp, udp, h3: one echo or GET
	// In open loop, Lag is how late operations started (the tool's share
	// of the latencies above) and Service the operations' time from their
	// actual start: the latency without the tool's delay, but also without
	// the queueing a stalled proxy causes.
	Lag     Latency `json:"start_lag"`
	Service Latency `json:"service"`

	ErrorsByClass map[string]int64  `json:"errors_by_class,omitempty"`
	ErrorSamples  map[string]string `json:"error_samples,omitempty"`

	Proxy    *ProxyStats `json:"proxy,omitempty"`
	Baseline *Report     `json:"baseline,omitempty"`
	Ratios   *Ratios     `json:"ratios,omitempty"`
}

func (r *run) report(measured time.Duration, openAtEnd int64) *Report {
	secs := max(measured.Seconds(), 0)
	rep := &Report{
		Name: r.cfg.Name, Mode: r.cfg.Mode, UDP: r.cfg.UDP, Conns: r.cfg.Conns, Tunnels: r.cfg.Tunnels, Rate: r.cfg.Rate,
		Warmup: r.cfg.Warmup.Seconds(), Duration: secs,
		Ops: r.ops.Load(), Bytes: r.bytes.Load(), OpenAtEnd: openAtEnd,
		Connect: r.connect.summary(), Setup: r.setup.summary(), Op: r.op.summary(), Lag: r.lag.summary(), Service: r.service.summary(),
	}
	if secs > 0 {
		rep.OpsPerSec = float64(rep.Ops) / secs
		rep.Mbps = float64(rep.Bytes) * 8 / secs / 1e6
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		rep.ErrorsByClass, rep.ErrorSamples = maps.Clone(r.errs), maps.Clone(r.samples)
	}
	for _, n := range r.errs {
		rep.Errors += n
	}
	return rep
}

// Ratios compare a run through the proxy with its baseline: proxy ÷ direct.
// Throughput below 1 and latency above 1 are the proxy's cost.
type Ratios struct {
	OpsPerSec float64 `json:"ops_per_s"`
	Mbps      float64 `json:"mbit_per_s"`
	SetupP50  float64 `json:"setup_p50"`
	SetupP99  float64 `json:"setup_p99"`
	OpP50     float64 `json:"op_p50"`
	OpP99     float64 `json:"op_p99"`
}

// SetBaseline attaches the same work's run without the proxy and the ratios.
func (rep *Report) SetBaseline(base *Report) {
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	rep.Baseline = base
	rep.Ratios = &Ratios{
		OpsPerSec: ratio(rep.OpsPerSec, base.OpsPerSec),
		Mbps:      ratio(rep.Mbps, base.Mbps),
		SetupP50:  ratio(rep.Setup.P50, base.Setup.P50),
		SetupP99:  ratio(rep.Setup.P99, base.Setup.P99),
		OpP50:     ratio(rep.Op.P50, base.Op.P50),
		OpP99:     ratio(rep.Op.P99, base.Op.P99),
	}
}

// WriteText writes the report for people.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	rep.text(&b)
	if rep.Baseline != nil {
		b.WriteString("\n")
		rep.Baseline.text(&b)
		r := rep.Ratios
		fmt.Fprintf(&b, "\nproxy ÷ direct: ops/s %.2fx, throughput %.2fx, setup p50 %.2fx p99 %.2fx",
			r.OpsPerSec, r.Mbps, r.SetupP50, r.SetupP99)
		if rep.Op.Count > 0 {
			fmt.Fprintf(&b, ", %s p50 %.2fx p99 %.2fx", opName(rep.Mode), r.OpP50, r.OpP99)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (rep *Report) text(b *strings.Builder) {
	loop := "closed loop"
	if rep.Rate > 0 {
		loop = fmt.Sprintf("open loop at %g/s", rep.Rate)
	}
	mode := string(rep.Mode)
	if rep.UDP {
		mode += " (CONNECT-UDP)"
	}
	fmt.Fprintf(b, "%s: %s, %d connections × %d tunnels, %s, %.1fs measured after %gs warm-up\n",
		rep.Name, mode, rep.Conns, rep.Tunnels, loop, rep.Duration, rep.Warmup)
	fmt.Fprintf(b, "  %d ops (%.1f/s), %d errors, %.1f Mbit/s, %d tunnels open at the end\n",
		rep.Ops, rep.OpsPerSec, rep.Errors, rep.Mbps, rep.OpenAtEnd)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  latency ms\tcount\tmean\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, row := range []struct {
		name string
		l    Latency
	}{{"connect", rep.Connect}, {"setup", rep.Setup}, {opName(rep.Mode), rep.Op}, {"start lag", rep.Lag}, {"service", rep.Service}} {
		if row.l.Count == 0 {
			continue
		}
		l := row.l
		fmt.Fprintf(tw, "  %s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", row.name, l.Count, l.Mean, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	tw.Flush()
	for _, class := range slices.Sorted(maps.Keys(rep.ErrorsByClass)) {
		fmt.Fprintf(b, "  error %s: %d, such as: %s\n", class, rep.ErrorsByClass[class], rep.ErrorSamples[class])
	}
	if p := rep.Proxy; p != nil {
		fmt.Fprintf(b, "  proxy pid %d: RSS %d KiB before, %d KiB with %d tunnels open (%+.1f KiB per tunnel), %d KiB after closing; threads %d, %d, %d\n",
			p.PID, p.RSSBeforeKiB, p.RSSOpenKiB, rep.OpenAtEnd, p.KiBPerTunnel, p.RSSAfterKiB, p.ThreadsBefore, p.ThreadsOpen, p.ThreadsAfter)
		if p.Error != "" {
			fmt.Fprintf(b, "  proxy pid %d: %s\n", p.PID, p.Error)
		}
	}
}

// opName names a mode's operation.
func opName(m Mode) string {
	switch m {
	case TCP, UDP:
		return "echo"
	case H3:
		return "get"
	}
	return "op"
}

// progress writes the live line: rates over the last interval, totals.
type progress struct {
	last               time.Time
	lastOps, lastBytes int64
}

func (p *progress) print(r *run, now, start time.Time) {
	ops, bytes, errs := r.liveOps.Load(), r.liveBytes.Load(), r.liveErrs.Load()
	dt := now.Sub(p.last).Seconds()
	phase := ""
	if now.Before(r.measureFrom) {
		phase = " (warm-up)"
	}
	fmt.Fprintf(r.cfg.Progress, "\r\x1b[K%5.0fs  %9.1f ops/s  %8.1f Mbit/s  %6d errors  %6d open%s",
		now.Sub(start).Seconds(), float64(ops-p.lastOps)/dt, float64(bytes-p.lastBytes)*8/dt/1e6, errs, r.open.Load(), phase)
	p.last, p.lastOps, p.lastBytes = now, ops, bytes
}
