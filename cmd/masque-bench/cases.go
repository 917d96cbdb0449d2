package main

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/masqued/masqued/internal/proc"
)

// Proxies a case can go through; masqueGo is also a client it can use.
const (
	direct   = ""
	masqueGo = "masque-go"
	masqued  = "masqued"
)

// benchCase is one row of the table: a download of the payload over HTTP/3
// (h3), TLS over TCP or plain TCP, directly or through a proxy.
type benchCase struct {
	name   string
	h3     bool // HTTP/3 GET from the HTTP/3 origin; else read a TCP origin
	upload bool // h3: POST the payload to the origin instead
	tls    bool // read the TLS origin; else the plain TCP one
	h2     bool // reach the proxy over HTTP/2 (TLS+TCP); else HTTP/3
	// forwarded: our client on masqued's -forward-listen port, in QUIC-aware
	// forwarded mode (draft-ietf-masque-quic-proxy)
	forwarded bool
	// relay: a two-hop chain, our client's connection to via (the egress)
	// running in a CONNECT-UDP tunnel through a second masqued, an
	// ingress relay (-relay-to): QUIC in QUIC in QUIC
	relay  bool
	client string // masqueGo: its client program; "": ours, inside the bench
	via    string // the proxy, or direct
	vs     []comparison
}

// comparison is another case that a case's speed is shown against, and the
// ratio it must reach, if any.
type comparison struct {
	vs   string
	note string  // what the other case is, where its name does not say it
	min  float64 // the target; 0 = none
}

var allCases = []benchCase{
	{name: "h3-direct", h3: true},
	{name: "h3-via-masque-go", h3: true, via: masqueGo, vs: []comparison{{vs: "h3-direct"}}},
	{name: "h3-masque-go-stack", h3: true, client: masqueGo, via: masqueGo, vs: []comparison{{vs: "h3-direct"}}},
	{name: "h3-via-masqued", h3: true, via: masqued, vs: []comparison{
		{vs: "h3-direct", min: 0.35},
		{vs: "h3-via-masque-go", note: "our client, masque-go's proxy", min: 2.5},
		{vs: "h3-masque-go-stack", note: "masque-go's client and proxy", min: 2.5},
	}},
	{name: "h3-via-masqued-forwarded", h3: true, via: masqued, forwarded: true, vs: []comparison{
		{vs: "h3-direct", min: 0.5},
		{vs: "h3-via-masqued", note: "our client, tunnelled"},
	}},
	// A two-hop chain (issue 17): what the relay and the egress each cost
	// per byte, and how much the second hop takes from the first.
	{name: "h3-via-masqued-two-hop", h3: true, via: masqued, relay: true, vs: []comparison{
		{vs: "h3-direct"},
		{vs: "h3-via-masqued", note: "one hop"},
	}},
	// What a standard RFC 9298 client costs masqued, beside the same client
	// through masque-go's proxy.
	{name: "h3-masque-go-via-masqued", h3: true, client: masqueGo, via: masqued, vs: []comparison{
		{vs: "h3-direct"},
		{vs: "h3-masque-go-stack", note: "masque-go's client and proxy"},
	}},
	{name: "h3-upload-direct", h3: true, upload: true},
	{name: "h3-upload-via-masque-go", h3: true, upload: true, via: masqueGo, vs: []comparison{{vs: "h3-upload-direct"}}},
	{name: "h3-upload-via-masqued", h3: true, upload: true, via: masqued, vs: []comparison{
		{vs: "h3-upload-direct"},
		{vs: "h3-upload-via-masque-go", note: "our client, masque-go's proxy"},
	}},
	// Forwarded mode carries an upload's packets outside the outer
	// connection, past quic-go's 32-deep per-stream datagram queue.
	{name: "h3-upload-via-masqued-forwarded", h3: true, upload: true, via: masqued, forwarded: true, vs: []comparison{
		{vs: "h3-upload-direct"},
		{vs: "h3-upload-via-masqued", note: "our client, tunnelled"},
	}},
	{name: "tls-direct", tls: true},
	{name: "tls-via-masqued-h2", tls: true, h2: true, via: masqued, vs: []comparison{
		{vs: "tls-direct", note: "TLS over kernel TCP", min: 0.6},
	}},
	{name: "tcp-direct"},
	{name: "tcp-via-masqued", via: masqued, vs: []comparison{
		{vs: "tcp-direct", note: "kernel TCP on loopback", min: 0.6},
		{vs: "h3-direct", note: "one QUIC hop, no tunnel"},
	}},
}

func caseNames() []string {
	var names []string
	for _, c := range allCases {
		names = append(names, c.name)
	}
	return names
}

// selectCases returns the named cases in table order; no names means all.
func selectCases(names []string) ([]benchCase, error) {
	if len(names) == 0 {
		return allCases, nil
	}
	var cs []benchCase
	for _, c := range allCases {
		for _, n := range names {
			if n == c.name {
				cs = append(cs, c)
			}
		}
	}
	if len(cs) != len(names) {
		return nil, fmt.Errorf("-case %q: want some of %q", names, caseNames())
	}
	return cs, nil
}

// transfer runs one download (or upload) of c, checks what arrived, and
// returns its time and the CPU its processes spent. The time includes
// setting up the connections and the tunnel, except with masque-go's
// client, which times only its GET.
func (e *env) transfer(ctx context.Context, c benchCase, timeout time.Duration) (time.Duration, cpuUse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	before, err := e.readCPU(c)
	if err != nil {
		return 0, cpuUse{}, err
	}
	var d, clientCPU time.Duration
	if c.client == masqueGo {
		d, clientCPU, err = e.downloadWithMasqueGo(ctx, c)
	} else {
		d, err = e.transferWithOurs(ctx, c)
	}
	if err != nil {
		return 0, cpuUse{}, err
	}
	after, err := e.readCPU(c)
	use := after.since(before)
	if c.client == masqueGo {
		use.client = clientCPU
	}
	return d, use, err
}

func (e *env) transferWithOurs(ctx context.Context, c benchCase) (time.Duration, error) {
	start := time.Now()
	body, err := e.open(ctx, c)
	if err != nil {
		return 0, err
	}
	check := e.check
	if c.upload { // the origin has checked it
		check = func(body io.Reader) error { _, err := io.Copy(io.Discard, body); return err }
	}
	if err := errors.Join(check(body), body.Close()); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// check reads body to its end and checks that it is the payload.
func (e *env) check(body io.Reader) error {
	sum := crc32.New(castagnoli)
	n, err := io.Copy(sum, body)
	switch {
	case err != nil:
		return fmt.Errorf("after %d bytes: %w", n, err)
	case n != e.payload.size || sum.Sum32() != e.payload.sum:
		return fmt.Errorf("got %d bytes with CRC-32C %08x, want %d bytes with %08x", n, sum.Sum32(), e.payload.size, e.payload.sum)
	}
	return nil
}

// statsLine is what masque-go's client prints on stderr after a fetch.
var statsLine = regexp.MustCompile(`(?m)^bytes=(\d+) seconds=([0-9.]+) `)

// downloadWithMasqueGo runs masque-go's client program, with its own QUIC
// settings, through c's proxy. The client writes the body to a file, checked
// afterwards; the time is the one the client reports, from its GET to the
// body's end: its connection to the proxy and the tunnel's set-up are not in
// it, unlike in the other cases (they take a few ms). It also returns the
// client's CPU time.
func (e *env) downloadWithMasqueGo(ctx context.Context, c benchCase) (time.Duration, time.Duration, error) {
	p := e.proxies[c.via]
	out := filepath.Join(e.dir, "masquego-body")
	defer os.Remove(out)
	template := p.template
	if template == "" {
		template = p.url + "/.well-known/masque/udp/{target_host}/{target_port}/" // masqued's default
	}
	bin, err := e.program(ctx, masqueGoDir) // built here when no case runs its proxy
	if err != nil {
		return 0, 0, err
	}
	cl, err := proc.Start(ctx, bin, "client", "-template", template, "-ca", p.certFile,
		"-origin-ca", e.originCertFile, "-o", out, "https://"+e.h3Origin.String()+"/")
	if err != nil {
		return 0, 0, err
	}
	defer cl.Stop() // it has exited by then; this releases its context
	if err := cl.Wait(); err != nil {
		return 0, 0, err
	}
	m := statsLine.FindAllStringSubmatch(cl.Stderr(), -1)
	if len(m) != 1 {
		return 0, 0, fmt.Errorf("%s printed %d statistics lines, want 1; %s", cl.Name(), len(m), cl.Output())
	}
	secs, err := strconv.ParseFloat(m[0][2], 64)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(out)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if err := e.check(f); err != nil {
		return 0, 0, fmt.Errorf("%s's body (it counted %s bytes): %w", cl.Name(), m[0][1], err)
	}
	cpu, err := cl.CPUTime()
	return time.Duration(secs * float64(time.Second)), cpu, err
}
