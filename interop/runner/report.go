package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// write writes results.json and results.md to dir.
func (r *Results) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	r.Markdown(&md)
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644)
}

// grid is the matrix of one case: rows clients, columns servers.
type grid struct {
	tc      *testCase
	clients []string
	servers []string
	cells   map[[2]string]*Cell // client, server
}

// grids arranges the cells by case, keeping the runner's order of cases,
// clients and servers, and only those with cells.
func (r *Results) grids() []grid {
	var gs []grid
	for _, tc := range cases {
		g := grid{tc: tc, cells: map[[2]string]*Cell{}}
		for i := range r.Cells {
			c := &r.Cells[i]
			if c.Case != tc.name {
				continue
			}
			g.cells[[2]string{c.Client, c.Server}] = c
			if !slices.Contains(g.clients, c.Client) {
				g.clients = append(g.clients, c.Client)
			}
			if !slices.Contains(g.servers, c.Server) {
				g.servers = append(g.servers, c.Server)
			}
		}
		if len(g.cells) > 0 {
			gs = append(gs, g)
		}
	}
	return gs
}

// mark is a cell's symbol; a failure of a cell not expected to pass is
// marked as such.
func mark(c *Cell) string {
	if c == nil {
		return ""
	}
	return c.Status.Symbol()
}

// Matrix writes the results as plain text: a matrix per case, then the
// failures with their logs.
func (r *Results) Matrix(w io.Writer) {
	for _, g := range r.grids() {
		fmt.Fprintf(w, "\n%s: %s\n", g.tc.name, g.tc.desc)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "\t%s\n", strings.Join(g.servers, "\t"))
		for _, cl := range g.clients {
			fmt.Fprintf(tw, "  %s", cl)
			for _, sv := range g.servers {
				fmt.Fprintf(tw, "\t%s", mark(g.cells[[2]string{cl, sv}]))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	counts := map[Status]int{}
	for _, c := range r.Cells {
		counts[c.Status]++
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d unsupported, in %.0fs\n", counts[Pass], counts[Fail], counts[Unsupported], r.Seconds)
	for _, c := range r.Failed() {
		fmt.Fprintf(w, "FAIL %s: %s\n     log: %s\n", c.Name(), firstLine(c.Detail), c.Log)
	}
}

// Markdown writes the results as Markdown: a table per case.
func (r *Results) Markdown(w io.Writer) {
	fmt.Fprintf(w, "✓ passed, ✕ failed, − unsupported by the client or the server (not a failure). Rows are clients, columns servers.\n")
	for _, g := range r.grids() {
		fmt.Fprintf(w, "\n**%s**: %s\n\n", g.tc.name, g.tc.desc)
		fmt.Fprintf(w, "| client | %s |\n|---|%s\n", strings.Join(g.servers, " | "), strings.Repeat(":-:|", len(g.servers)))
		for _, cl := range g.clients {
			fmt.Fprintf(w, "| %s |", cl)
			for _, sv := range g.servers {
				fmt.Fprintf(w, " %s |", mark(g.cells[[2]string{cl, sv}]))
			}
			fmt.Fprintln(w)
		}
	}
}
