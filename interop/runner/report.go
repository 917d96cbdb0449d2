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
	if v := r.versionLine(); v != "" {
		fmt.Fprintf(w, "programs: %s\n", v)
	}
	for _, c := range r.Failed() {
		fmt.Fprintf(w, "FAIL %s: %s\n     log: %s\n", c.Name(), firstLine(c.Detail), c.Log)
	}
}

// Markdown writes the results as Markdown: one table, a row per case and a
// column per client, each entry the client's results against every server
// in the order of the header's note; then the failures.
func (r *Results) Markdown(w io.Writer) {
	gs := r.grids()
	var clients, servers []string
	for _, g := range gs {
		for _, cl := range g.clients {
			if !slices.Contains(clients, cl) {
				clients = append(clients, cl)
			}
		}
		for _, sv := range g.servers {
			if !slices.Contains(servers, sv) {
				servers = append(servers, sv)
			}
		}
	}
	fmt.Fprintf(w, "Each entry is the client against %s, in that order: ✓ passed, ✕ failed, − unsupported by the client or the server (not a failure).\n\n", strings.Join(servers, " · "))
	fmt.Fprintf(w, "| case | %s |\n|---|%s\n", strings.Join(clients, " | "), strings.Repeat(":-:|", len(clients)))
	for _, g := range gs {
		fmt.Fprintf(w, "| %s |", g.tc.name)
		for _, cl := range clients {
			var marks []string
			for _, sv := range servers {
				marks = append(marks, or(mark(g.cells[[2]string{cl, sv}]), " "))
			}
			fmt.Fprintf(w, " %s |", strings.Join(marks, " "))
		}
		fmt.Fprintln(w)
	}
	counts := map[Status]int{}
	for _, c := range r.Cells {
		counts[c.Status]++
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d unsupported.", counts[Pass], counts[Fail], counts[Unsupported])
	if v := r.versionLine(); v != "" {
		fmt.Fprintf(w, " Programs: %s.", v)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	notes := false
	for _, c := range r.Failed() {
		fmt.Fprintf(w, "- ✕ `%s`: %s\n", c.Name(), firstLine(c.Detail))
		notes = true
	}
	for _, c := range r.Cells {
		if c.Status == Unsupported && c.Seconds > 0 { // found out by running it
			fmt.Fprintf(w, "- − `%s`: %s\n", c.Name(), c.Detail)
			notes = true
		}
	}
	if notes {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "<details><summary>The cases</summary>\n\n")
	for _, g := range gs {
		fmt.Fprintf(w, "- **%s**: %s\n", g.tc.name, g.tc.desc)
	}
	fmt.Fprintf(w, "\n</details>\n")
}

// versionLine lists the programs' versions in the order of the matrix.
func (r *Results) versionLine() string {
	var vs []string
	for _, name := range append(Servers(), Clients()...) {
		if i := strings.IndexByte(name, '/'); i >= 0 {
			name = name[:i]
		}
		if v, ok := r.Versions[name]; ok && !slices.Contains(vs, name+" "+v) {
			vs = append(vs, name+" "+v)
		}
	}
	return strings.Join(vs, ", ")
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// Markers delimit the generated matrix in a Markdown document such as the
// README; SpliceMarkdown replaces what lies between them.
const (
	BeginMarker = "<!-- interop matrix: generated by cmd/masque-interop -readme; do not edit -->"
	EndMarker   = "<!-- end of interop matrix -->"
)

// SpliceMarkdown returns doc with the text between BeginMarker and EndMarker
// replaced by md.
func SpliceMarkdown(doc []byte, md string) ([]byte, error) {
	s := string(doc)
	before, rest, ok := strings.Cut(s, BeginMarker)
	if !ok {
		return nil, fmt.Errorf("no %q line", BeginMarker)
	}
	_, after, ok := strings.Cut(rest, EndMarker)
	if !ok {
		return nil, fmt.Errorf("no %q line after the first marker", EndMarker)
	}
	return []byte(before + BeginMarker + "\n\n" + md + "\n" + EndMarker + after), nil
}
