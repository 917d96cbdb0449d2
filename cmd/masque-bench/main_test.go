package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain lets the bench run this test binary as its origin process, as
// it runs itself.
func TestMain(m *testing.M) {
	if slices.Contains(os.Args[1:], "-serve-origins") {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// A whole bench, small: every case downloads through the real programs, and
// the table has a line of numbers for each, CPU included. Which targets are
// met or missed is the table's figure, not the test's: any verdict passes.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs masqued and masque-go")
	}
	var out bytes.Buffer
	// A megabyte moves in well under a second: the minute per transfer only
	// catches one that hangs.
	if err := run(options{size: 1e6, runs: 1, timeout: time.Minute}, &out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, c := range allCases {
		relayCPU, proxyCPU := `-`, `[0-9.]+`
		if c.relay {
			relayCPU = `[0-9.]+`
		}
		if c.via == direct {
			proxyCPU = `-`
		}
		line := regexp.MustCompile(`(?m)^` + c.name + ` +1 +[0-9.]+ +[0-9]+ +[0-9.]+ +` + relayCPU + ` +` + proxyCPU + ` +[0-9.]+ `)
		if !line.MatchString(table) {
			t.Errorf("no line of numbers for %s in\n%s", c.name, table)
		}
	}
	for _, want := range []string{"≥ 0.35x: ", "Proxy CPU per byte, HTTP/3 inside CONNECT-UDP, our client: masqued ", "Two-hop chain against one hop, CPU per byte: relay ", "Machine: nproc "} {
		if !strings.Contains(table, want) {
			t.Errorf("table without %q:\n%s", want, table)
		}
	}
}

func TestComparisonCells(t *testing.T) {
	c := comparison{vs: "h3-direct", note: "one hop", min: 0.35}
	for _, tc := range []struct {
		mbits, base float64
		want        []string
	}{
		{400, 1000, []string{"h3-direct (one hop)", "0.40x", "≥ 0.35x: met"}},
		{300, 1000, []string{"h3-direct (one hop)", "0.30x", "≥ 0.35x: MISSED"}},
		{300, 0, []string{"h3-direct (one hop)", "-", "≥ 0.35x: not measured"}},
	} {
		if got := c.cells(tc.mbits, tc.base); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("cells(%v, %v) = %q, want %q", tc.mbits, tc.base, got, tc.want)
		}
	}
}

func TestCPUCells(t *testing.T) {
	o := options{size: 500e6, runs: 2} // 1 GB in all
	cpu := cpuUse{measured: true, client: 3 * time.Second, relay: 2 * time.Second, proxy: 1500 * time.Millisecond, origins: 250 * time.Millisecond}
	for _, tc := range []struct {
		r    result
		want string
	}{
		{result{benchCase: benchCase{via: masqued}, cpu: cpu}, "3.00|-|1.50|0.25"},
		{result{benchCase: benchCase{via: masqued, relay: true}, cpu: cpu}, "3.00|2.00|1.50|0.25"},
		{result{benchCase: benchCase{via: direct}, cpu: cpu}, "3.00|-|-|0.25"},
		{result{benchCase: benchCase{via: masqued}}, "-|-|-|-"}, // -inprocess
	} {
		if got := strings.Join(tc.r.cpuCells(o), "|"); got != tc.want {
			t.Errorf("cpuCells of %+v = %s, want %s", tc.r.cpu, got, tc.want)
		}
	}
}

// An upload's body is the payload, and the origin's check refuses anything
// else.
func TestPayloadUpload(t *testing.T) {
	p := newPayload(3<<20 + 5) // more than one block
	var want bytes.Buffer
	p.WriteTo(&want)
	got, err := io.ReadAll(p.reader())
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("reader gave %d bytes (%v), want the %d of WriteTo", len(got), err, want.Len())
	}
	for _, tc := range []struct {
		name string
		body []byte
		code int
	}{
		{"the payload", got, http.StatusOK},
		{"one byte short", got[:len(got)-1], http.StatusBadRequest},
		{"one byte changed", append(append([]byte(nil), got[:len(got)-1]...), got[len(got)-1]^1), http.StatusBadRequest},
	} {
		w := httptest.NewRecorder()
		p.checkUpload(w, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(tc.body)))
		if w.Code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.code)
		}
	}
}
