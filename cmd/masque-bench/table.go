package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
)

// result is a case's median download.
type result struct {
	benchCase
	seconds, mbits float64
}

// printTable prints the results, with the targets beside each row, as
// aligned text or Markdown, followed by how they were measured.
func printTable(w io.Writer, res []result, o options) {
	mbitsOf := map[string]float64{}
	for _, r := range res {
		mbitsOf[r.name] = r.mbits
	}
	ratio := func(r result, vs string) string {
		if vs == "" || mbitsOf[vs] == 0 {
			return ""
		}
		return fmt.Sprintf("%.2fx", r.mbits/mbitsOf[vs])
	}
	rows := [][]string{{"case", "MB", "seconds", "Mbit/s", "vs direct", "x masque-go", "target"}}
	for _, r := range res {
		var goals []string
		for _, t := range r.targets {
			verdict := "not measured"
			if base := mbitsOf[t.vs]; base > 0 {
				verdict = "MISSED"
				if r.mbits/base >= t.min {
					verdict = "met"
				}
			}
			goals = append(goals, fmt.Sprintf("≥ %.2gx %s: %s", t.min, t.vs, verdict))
		}
		rows = append(rows, []string{
			r.name,
			fmt.Sprintf("%.0f", float64(o.size)/1e6),
			fmt.Sprintf("%.3f", r.seconds),
			fmt.Sprintf("%.0f", r.mbits),
			ratio(r, r.baseVs),
			ratio(r, r.extraVs),
			strings.Join(goals, "; "),
		})
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
	ours := "masqued as its own process (./cmd/masqued)"
	if o.inProcess {
		ours = "masqued's proxy inside the bench process (-inprocess)"
	}
	fmt.Fprintf(w, "\nMedian of %d downloads of %d bytes per case; seconds include connection and tunnel setup; every body's length and CRC-32C checked.\n", o.runs, o.size)
	fmt.Fprintf(w, "Proxies: %s; masque-go v0.5.0 (interop/peers/masquego, its own process). Clients and origins run inside the bench; all on 127.0.0.1.\n", ours)
	fmt.Fprintln(w, "The HTTP/3 origin of all h3 cases disables path MTU discovery on its QUIC side: masque-go's proxy closes a tunnel when a datagram does not fit its client connection.")
	fmt.Fprintf(w, "Machine: nproc %d, GOMAXPROCS %d, %s %s/%s.\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func printMarkdown(w io.Writer, rows [][]string) {
	for i, row := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		if i == 0 {
			fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(row)))
		}
	}
}
