// Command masque-interop is masqued's interop runner (package
// interop/runner): it plays clients × servers × test cases with real
// programs (masqued, masque-go's proxy and client, masque-client, curl,
// Chromium) against origins on loopback, prints a matrix per case, writes
// results.json, results.md and a log per cell to -out, and exits 1 when a
// cell expected to pass did not.
//
//	go run ./cmd/masque-interop -out /tmp/interop
//	go run ./cmd/masque-interop -run 'capsule|connect-udp' -out /tmp/interop
//	go run ./cmd/masque-interop -readme README.md   # the README's matrix
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/interop/runner"
)

func main() { cli.Main("masque-interop", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("masque-interop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c runner.Config
	var filter, masquedArgs string
	var list bool
	var readme string
	fs.StringVar(&c.OutDir, "out", "interop-results", "`dir` for results.json, results.md, logs/ and the built programs")
	fs.StringVar(&filter, "run", "", "run only the cells whose case/client/server matches this `regexp`, e.g. 'connect-tcp/curl/' or '/masque-go$'")
	fs.IntVar(&c.Parallel, "parallel", 2, "cells to run at once")
	fs.StringVar(&masquedArgs, "masqued-args", "", "extra `flags` for every masqued, space-separated (e.g. -interop-break capsules)")
	fs.BoolVar(&c.NoBrowser, "no-browser", false, "report the Chromium cells as unsupported, where Chromium cannot be installed")
	fs.StringVar(&readme, "readme", "", "replace the matrix between the markers in this Markdown `file` (the README) with results.md")
	fs.BoolVar(&list, "list", false, "list the cases, clients and servers, and exit")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef(fs, "unexpected argument %q", fs.Arg(0))
	}
	if list {
		for _, tc := range runner.Cases() {
			fmt.Fprintf(stdout, "%-22s %s\n", tc.Name, tc.Description)
		}
		fmt.Fprintf(stdout, "\nclients: %s\nservers: %s\n", strings.Join(runner.Clients(), ", "), strings.Join(runner.Servers(), ", "))
		return nil
	}
	if filter != "" && readme != "" {
		return cli.Usagef(fs, "-readme shows the full matrix: not with -run")
	}
	if filter != "" {
		re, err := regexp.Compile(filter)
		if err != nil {
			return cli.Usagef(fs, "-run: %v", err)
		}
		c.Run = re
	}
	c.MasquedArgs = strings.Fields(masquedArgs)
	c.Progress = stderr
	r, err := runner.Run(ctx, c)
	if err != nil {
		return err
	}
	r.Matrix(stdout)
	fmt.Fprintf(stdout, "results: %s/results.md, results.json; logs in %s/logs\n", c.OutDir, c.OutDir)
	if readme != "" {
		var md strings.Builder
		r.Markdown(&md)
		doc, err := os.ReadFile(readme)
		if err == nil {
			doc, err = runner.SpliceMarkdown(doc, md.String())
		}
		if err == nil {
			err = os.WriteFile(readme, doc, 0o644)
		}
		if err != nil {
			return fmt.Errorf("-readme: %w", err)
		}
	}
	if n := len(r.Failed()); n > 0 {
		return errors.New(fmt.Sprint(n, " cells expected to pass did not"))
	}
	return nil
}
