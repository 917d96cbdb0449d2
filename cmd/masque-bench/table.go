package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"
)

// result is a case's median transfer, and the CPU of all its transfers.
type result struct {
	benchCase
	seconds, mbits float64
	cpu            cpuUse
}

// cpuCells are the case's CPU seconds per GB transferred, over all its
// runs: client, relay, proxy, origins; "-" where not measured or there is
// no such process (a relay but in a two-hop case, a proxy when direct).
func (r result) cpuCells(o options) []string {
	gb := float64(o.size) * float64(o.runs) / 1e9
	cells := []string{"-", "-", "-", "-"}
	has := []bool{true, r.relay, r.via != direct, true}
	for i, d := range []time.Duration{r.cpu.client, r.cpu.relay, r.cpu.proxy, r.cpu.origins} {
		if r.cpu.measured && has[i] {
			cells[i] = fmt.Sprintf("%.2f", d.Seconds()/gb)
		}
	}
	return cells
}

// printTable prints the results as aligned text or Markdown, each case's
// comparisons and targets on lines of their own below its numbers, followed
// by how they were measured.
func printTable(w io.Writer, res []result, o options) {
	mbitsOf := map[string]float64{}
	for _, r := range res {
		mbitsOf[r.name] = r.mbits
	}
	rows := [][]string{{"case", "MB", "seconds", "Mbit/s", "client CPU", "relay CPU", "proxy CPU", "origin CPU", "compared with", "ratio", "target"}}
	for _, r := range res {
		numbers := append([]string{
			r.name,
			fmt.Sprintf("%.0f", float64(o.size)/1e6),
			fmt.Sprintf("%.3f", r.seconds),
			fmt.Sprintf("%.0f", r.mbits),
		}, r.cpuCells(o)...)
		if len(r.vs) == 0 {
			rows = append(rows, append(numbers, "", "", ""))
		}
		for i, c := range r.vs {
			if i > 0 {
				numbers = make([]string, len(numbers)) // on the case's first line only
			}
			rows = append(rows, append(numbers, c.cells(r.mbits, mbitsOf[c.vs])...))
		}
	}
	if o.markdown {
		printMarkdown(w, rows)
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
	}
	ours, origins := "masqued as its own process (./cmd/masqued)", "the origins in a process of their own"
	if o.inProcess {
		ours, origins = "masqued's proxy inside the bench process (-inprocess)", "the origins inside the bench"
	}
	fmt.Fprintf(w, "\nMedian of %d transfers of %d bytes per case (downloads; uploads in the h3-upload cases, an HTTP/3 POST); seconds include connection and tunnel setup (not for h3-masque-go-stack: see below); every body's length and CRC-32C checked, an upload's by the origin.\n", o.runs, o.size)
	if o.inProcess {
		fmt.Fprintln(w, "CPU is not measured with -inprocess: one process runs client, proxy and origins.")
	} else {
		fmt.Fprintln(w, "CPU: user+system seconds per GB transferred, over all runs, read from /proc (10 ms steps); client CPU is the bench process's, or masque-go's client's; relay CPU is the ingress relay's of a two-hop chain, whose proxy CPU is the egress's.")
		printProxyCPU(w, res)
		printTwoHopCPU(w, res)
	}
	fmt.Fprintf(w, "Proxies: %s; masque-go v0.5.0 (interop/peers/masquego, its own process). Our client runs inside the bench, %s; all on 127.0.0.1.\n", ours, origins)
	fmt.Fprintln(w, "h3-masque-go-stack runs masque-go's client program, which writes the body to a file (checked afterwards) and reports its time from GET to the body's end, without its connection to the proxy and the tunnel's set-up.")
	fmt.Fprintln(w, "h3-via-masqued-two-hop chains two masqued processes: our client's HTTP/3 connection to the egress (the h3-via-masqued proxy) runs in a CONNECT-UDP tunnel through an ingress relay (masqued -relay-to, 1400-byte packets), and the download runs in a CONNECT-UDP tunnel of that: QUIC in QUIC in QUIC.")
	fmt.Fprintln(w, "tcp-via-masqued is also compared with h3-direct: kernel TCP on loopback is a memory copy that no QUIC tunnel approaches, and h3-direct is what one QUIC hop costs.")
	fmt.Fprintln(w, "The HTTP/3 origin of all h3 cases disables path MTU discovery on its QUIC side: masque-go's proxy closes a tunnel when a datagram does not fit its client connection.")
	procs := fmt.Sprint(runtime.GOMAXPROCS(0))
	if o.gomaxprocs > 0 {
		procs += " in every process (-gomaxprocs)"
	}
	fmt.Fprintf(w, "Machine: nproc %d, GOMAXPROCS %s, %s %s/%s; %s.\n", runtime.NumCPU(), procs, runtime.Version(), runtime.GOOS, runtime.GOARCH, quicGoVersion())
}

// cells are c's last three cells in a case's table line: what the case
// compares with, the ratio of its mbits to that case's base (0 = not
// measured), and the target's verdict.
func (c comparison) cells(mbits, base float64) []string {
	vs := c.vs
	if c.note != "" {
		vs += " (" + c.note + ")"
	}
	ratio, goal := "-", ""
	if base > 0 {
		ratio = fmt.Sprintf("%.2fx", mbits/base)
	}
	switch {
	case c.min == 0:
	case base == 0:
		goal = fmt.Sprintf("≥ %.2gx: not measured", c.min)
	case mbits/base >= c.min:
		goal = fmt.Sprintf("≥ %.2gx: met", c.min)
	default:
		goal = fmt.Sprintf("≥ %.2gx: MISSED", c.min)
	}
	return []string{vs, ratio, goal}
}

func printMarkdown(w io.Writer, rows [][]string) {
	for i, row := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		if i == 0 {
			fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(row)))
		}
	}
}

// printProxyCPU compares what each proxy spends per byte of the same HTTP/3
// download, from the same client and origin: the cost of the proxy alone,
// whatever the machine's other processes take. The first two pairs are our
// client's, tunnelled and in forwarded mode, the last a standard RFC 9298
// client's (masque-go's).
func printProxyCPU(w io.Writer, res []result) {
	byName := map[string]result{}
	for _, r := range res {
		byName[r.name] = r
	}
	for _, pair := range []struct{ ours, theirs, client string }{
		{"h3-via-masqued", "h3-via-masque-go", "our client"},
		{"h3-via-masqued-forwarded", "h3-via-masque-go", "our client in forwarded mode"},
		{"h3-masque-go-via-masqued", "h3-masque-go-stack", "masque-go's client"},
	} {
		ours, ok1 := byName[pair.ours]
		theirs, ok2 := byName[pair.theirs]
		if ok1 && ok2 { // same size and runs
			fmt.Fprintf(w, "Proxy CPU per byte, HTTP/3 inside CONNECT-UDP, %s: masqued %s masque-go's proxy.\n", pair.client, cpuRatio(ours.cpu.proxy, theirs.cpu.proxy))
		}
	}
}

// printTwoHopCPU puts the two-hop chain's CPU per byte at each hop beside
// the one-hop case's: what the relay and the egress each cost, and what the
// second hop costs the client.
func printTwoHopCPU(w io.Writer, res []result) {
	var one, two result
	for _, r := range res {
		switch r.name {
		case "h3-via-masqued":
			one = r
		case "h3-via-masqued-two-hop":
			two = r
		}
	}
	if one.name == "" || two.name == "" {
		return
	}
	fmt.Fprintf(w, "Two-hop chain against one hop, CPU per byte: relay %s, egress %s and the two together %s one hop's proxy; client %s.\n",
		cpuRatio(two.cpu.relay, one.cpu.proxy), cpuRatio(two.cpu.proxy, one.cpu.proxy),
		cpuRatio(two.cpu.relay+two.cpu.proxy, one.cpu.proxy), cpuRatio(two.cpu.client, one.cpu.client))
}

// cpuRatio is a/b as "0.00x", or "-" where b is too small for /proc's 10 ms
// steps to have measured it.
func cpuRatio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a.Seconds()/b.Seconds())
}

// quicGoVersion says which quic-go the bench, our client, the origins and
// masqued were built with, and whether it was replaced (make bench-patched).
func quicGoVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "quic-go: unknown"
	}
	for _, m := range info.Deps {
		if m.Path != "github.com/quic-go/quic-go" {
			continue
		}
		if m.Replace != nil {
			return "our programs on quic-go " + m.Version + " replaced by " + m.Replace.Path + " (make bench-patched)"
		}
		return "our programs on quic-go " + m.Version
	}
	return "quic-go: not linked"
}
