// Command masque-bench measures how fast masqued tunnels bulk downloads (and
// HTTP/3 uploads), against the same transfer done directly and through
// masque-go's proxy, and through a two-hop chain of two masqued (an ingress
// relay, -relay-to, in front of the egress), and prints one table measured
// in one run on this machine (`make bench`).
//
// Our client runs inside the bench; the origins (this program again, with
// -serve-origins), masqued (and the relay), masque-go's proxy and, for one case, masque-go's
// client run as their own processes, built from ./cmd/masqued and
// interop/peers/masquego (-inprocess runs origins and masqued's proxy inside
// the bench instead, so that -cpuprofile covers them). Everything talks over
// 127.0.0.1.
// Every transfer's length and CRC-32C are checked, so a broken tunnel cannot
// produce a fast number.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/xconnect"
)

// options is the command line.
type options struct {
	size       int64
	runs       int
	cases      []string
	inProcess  bool
	markdown   bool
	timeout    time.Duration
	cpuProfile string
	memProfile string
	gomaxprocs int // for every process; 0 = Go's default
}

func main() {
	if err := xconnect.Enable(); err != nil { // for -inprocess's HTTP/2 front
		fmt.Fprintln(os.Stderr, "masque-bench:", err)
		os.Exit(1)
	}
	o := options{size: 200e6}
	flag.Func("size", "bytes per transfer, with a unit: KB, MB or GB (powers of 10) (default 200MB)", func(s string) (err error) {
		o.size, err = parseSize(s)
		return err
	})
	flag.IntVar(&o.runs, "runs", 3, "transfers per case; the table shows the median")
	caseList := flag.String("case", "", "comma-separated cases to run (default all: "+strings.Join(caseNames(), ", ")+")")
	flag.BoolVar(&o.inProcess, "inprocess", false, "run masqued's proxy inside the bench instead of as its own process")
	flag.BoolVar(&o.markdown, "markdown", false, "print the table as Markdown")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on a transfer after this long")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write the bench process's CPU profile of the measurements to `file`")
	flag.StringVar(&o.memProfile, "memprofile", "", "write the bench process's heap profile after the measurements to `file`")
	flag.IntVar(&o.gomaxprocs, "gomaxprocs", 0, "run every process of the bench with GOMAXPROCS `n` (0: Go's default, the number of CPUs)")
	serve := flag.Bool("serve-origins", false, "internal: be the bench's origin process")
	originCert := flag.String("origin-cert", "", "internal: the origins' certificate with -serve-origins")
	originKey := flag.String("origin-key", "", "internal: the origins' key with -serve-origins")
	// A mistake prints a short usage and the error last, and exits 2 (cli).
	flag.CommandLine.Init("masque-bench", flag.ContinueOnError)
	if err := cli.Parse(flag.CommandLine, os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		os.Exit(2)
	}
	if *serve {
		if err := serveOrigins(o.size, *originCert, *originKey); err != nil {
			fmt.Fprintln(os.Stderr, "masque-bench origins:", err)
			os.Exit(1)
		}
		return
	}
	if *caseList != "" {
		o.cases = strings.Split(*caseList, ",")
	}
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "masque-bench:", err)
		os.Exit(1)
	}
}

// run measures the cases o names and prints the table on w.
func run(o options, w io.Writer) error {
	cs, err := selectCases(o.cases)
	if err != nil {
		return err
	}
	if o.runs < 1 || o.size < 1 || o.gomaxprocs < 0 {
		return fmt.Errorf("-runs and -size must be positive, -gomaxprocs not negative")
	}
	if o.gomaxprocs > 0 {
		// The programs the bench starts inherit the environment.
		runtime.GOMAXPROCS(o.gomaxprocs)
		if err := os.Setenv("GOMAXPROCS", strconv.Itoa(o.gomaxprocs)); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := setUp(ctx, o, cs)
	if err != nil {
		return err
	}
	res, err := profile(o, func() ([]result, error) { return measure(ctx, e, cs, o) })
	if err = errors.Join(err, e.close()); err != nil {
		return err
	}
	printTable(w, res, o)
	return nil
}

// profile runs fn under the CPU profile, then writes the heap profile, as
// the options ask.
func profile(o options, fn func() ([]result, error)) ([]result, error) {
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := fn()
	if err != nil || o.memProfile == "" {
		return res, err
	}
	return res, writeHeapProfile(o.memProfile)
}

// measure runs every case o.runs times, in rounds so that slow drifts of
// the machine spread over all cases, and returns the median of each.
func measure(ctx context.Context, e *env, cs []benchCase, o options) ([]result, error) {
	secs := make([][]float64, len(cs))
	cpu := make([]cpuUse, len(cs))
	for r := range o.runs {
		for i, c := range cs {
			d, use, err := e.transfer(ctx, c, o.timeout)
			if err != nil {
				return nil, fmt.Errorf("%s, run %d: %w", c.name, r+1, err)
			}
			secs[i] = append(secs[i], d.Seconds())
			cpu[i].add(use)
			fmt.Fprintf(os.Stderr, "%-24s run %d/%d: %6.3f s %8.0f Mbit/s\n", c.name, r+1, o.runs, d.Seconds(), mbits(o.size, d.Seconds()))
		}
	}
	res := make([]result, len(cs))
	for i, c := range cs {
		slices.Sort(secs[i])
		res[i] = result{benchCase: c, seconds: secs[i][len(secs[i])/2], mbits: mbits(o.size, secs[i][len(secs[i])/2]), cpu: cpu[i]}
	}
	return res, nil
}

func mbits(size int64, secs float64) float64 { return float64(size) * 8 / secs / 1e6 }

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseSize parses "200MB", "5MB", "1GB", "64KB" or a plain byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}} {
		if n, ok := strings.CutSuffix(strings.ToUpper(s), u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional KB, MB or GB", s)
	}
	return n * mult, nil
}
