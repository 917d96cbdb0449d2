// Command masque-load puts a MASQUE proxy under load: many connections, each
// with many tunnels, doing TCP or UDP echoes, HTTP/3 GETs inside CONNECT-UDP,
// or opening and closing tunnels, closed loop or at a fixed rate. It reports
// throughput, latency percentiles and errors by proxy status, and with
// -baseline the same work straight to the origins and the ratios. Unless
// targets are given it starts its own origins on loopback (the proxy must
// then allow private targets). With a Privacy Pass account (-account-key,
// -attester) it mints -tokens tokens before the run and presents one per
// tunnel, so that authenticated load measures redemption, not issuance.
// -proxy RELAY,EGRESS loads a two-hop chain (masqued -relay-to): each
// connection to the egress proxy runs through a connection of its own to
// the relay, as masque-client's do.
//
//	masque-load -proxy https://127.0.0.1:4433 -ca cert.pem -mode setup -c 1 -t 50 -rate 1000 -d 10s
//	masque-load -proxy https://127.0.0.1:4434,https://127.0.0.1:4433 -ca relay.pem,egress.pem -mode h3 -size 10000000
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/cmd/masque-load/internal/load"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/privacypass"
)

func main() { cli.Main("masque-load", run) }

// options is masque-load's command line.
type options struct {
	proxy, ca, via, mode, tunnel, template, originCA, authorization string
	accountKey, attester, issuerDirectory                           string
	tokens                                                          int
	tcpTarget, udpTarget, h3Target                                  string
	conns, tunnels, size, pid                                       int
	rate                                                            float64
	duration, warmup, timeout                                       time.Duration
	count                                                           int64
	jsonOut, baseline, disableDatagrams                             bool
	progress                                                        string
	transport                                                       client.Transport // -via
	hops, cas                                                       []string         // -proxy and -ca, an entry per proxy of the chain
}

const usage = `usage: masque-load -proxy https://HOST:PORT[,https://EGRESS:PORT] [flags]

Modes: tcp (CONNECT to a TCP echo), udp (CONNECT-UDP to a UDP echo), h3
(HTTP/3 GETs inside CONNECT-UDP), setup (open and close CONNECT tunnels),
idle (open -c × -t CONNECT tunnels and hold them for -d).

`

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("masque-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	fs.StringVar(&o.proxy, "proxy", "", "proxy `URL`, https://host:port, or a comma-separated ingress relay and egress proxy, a two-hop chain (required)")
	fs.StringVar(&o.ca, "ca", "", "PEM `file` to trust for the proxy (default: system roots); for a chain, one for both or a comma-separated one per proxy")
	fs.StringVar(&o.via, "via", "auto", "transport to the proxy: auto (HTTP/3, else HTTP/2), h3, h2 or h1")
	fs.StringVar(&o.template, "udp-template", masque.DefaultUDPTemplate, "the proxy's CONNECT-UDP URI `template`")
	fs.BoolVar(&o.disableDatagrams, "disable-datagrams", false, "carry UDP in DATAGRAM capsules, not QUIC datagrams")
	fs.StringVar(&o.authorization, "proxy-authorization", "", "Proxy-Authorization field `value` sent with every tunnel request (in a chain, to the egress proxy alone)")
	fs.StringVar(&o.accountKey, "account-key", "", "Privacy Pass: `file` holding the API key of an account at -attester; -tokens tokens are minted before the run (in a chain, for the egress proxy alone)")
	fs.StringVar(&o.attester, "attester", "", "Privacy Pass: the attester's token request `URL` (with -account-key)")
	fs.StringVar(&o.issuerDirectory, "issuer-directory", "", "Privacy Pass: the issuer directory `URL`; a proxy's token key must be listed there")
	fs.IntVar(&o.tokens, "tokens", 50, "Privacy Pass: tokens to mint before the run, one per tunnel (a run that needs more counts auth errors);\nan attester limits the rate per account (masqued's demo account: a burst of 50, then 1/s; pp-issuer -rate, -burst)")
	fs.StringVar(&o.mode, "mode", "tcp", "what tunnels do: tcp, udp, h3, setup or idle")
	fs.StringVar(&o.tunnel, "tunnel", "tcp", "setup and idle: the `kind` of tunnel they open, tcp (CONNECT) or udp (CONNECT-UDP)")
	fs.IntVar(&o.conns, "c", 10, "connections to the proxy")
	fs.IntVar(&o.tunnels, "t", 10, "tunnels (workers) per connection")
	fs.Float64Var(&o.rate, "rate", 0, "`operations` per second over all workers, open loop (0: closed loop, each worker back to back)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measure for this long (0 with -n: until -n ops ran)")
	fs.Int64Var(&o.count, "n", 0, "stop after this many operations, warm-up included (0: no limit)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "run this long before measuring")
	fs.IntVar(&o.size, "size", 1000, "`bytes` per operation: echoed (tcp, udp) or fetched (h3)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "limit for connecting, opening a tunnel and each operation")
	fs.StringVar(&o.tcpTarget, "tcp-target", "", "TCP echo `host:port` (default: one the tool starts on loopback)")
	fs.StringVar(&o.udpTarget, "udp-target", "", "UDP echo `host:port` (default: one the tool starts on loopback)")
	fs.StringVar(&o.h3Target, "h3-target", "", "HTTP/3 origin `host:port` serving GET /?n=BYTES (default: one the tool starts on loopback)")
	fs.StringVar(&o.originCA, "origin-ca", "", "PEM `file` to trust for -h3-target (default: system roots)")
	fs.BoolVar(&o.baseline, "baseline", false, "run the same work again straight to the origins and print the ratios")
	fs.BoolVar(&o.jsonOut, "json", false, "write the report as JSON")
	fs.IntVar(&o.pid, "proxy-pid", 0, "the proxy's process `id` on this host: report its memory per tunnel")
	fs.StringVar(&o.progress, "progress", "auto", "live progress line on stderr: auto (if a terminal), on or off")
	if err := cli.Parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, cli.Usagef(fs, "unexpected arguments %q", fs.Args())
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if o.count > 0 && !explicit["d"] {
		o.duration = 0
	}
	switch {
	case o.proxy == "":
		return nil, cli.Usagef(fs, "-proxy is required")
	case o.conns < 1 || o.tunnels < 1:
		return nil, cli.Usagef(fs, "-c and -t must be at least 1")
	case o.rate < 0 || o.count < 0 || o.duration < 0 || o.warmup < 0 || o.size < 0 || o.timeout <= 0:
		return nil, cli.Usagef(fs, "-rate, -n, -d, -warmup and -size cannot be negative, -timeout must be positive")
	case o.duration == 0 && o.count == 0:
		return nil, cli.Usagef(fs, "give -d, -n or both")
	case (o.accountKey == "") != (o.attester == ""):
		return nil, cli.Usagef(fs, "-account-key and -attester go together")
	case o.accountKey != "" && o.authorization != "":
		return nil, cli.Usagef(fs, "-account-key and -proxy-authorization are two kinds of credentials: give one")
	case o.tokens < 1:
		return nil, cli.Usagef(fs, "-tokens must be at least 1")
	case o.progress != "auto" && o.progress != "on" && o.progress != "off":
		return nil, cli.Usagef(fs, "-progress is auto, on or off, not %q", o.progress)
	}
	for h := range strings.SplitSeq(o.proxy, ",") {
		o.hops = append(o.hops, strings.TrimSpace(h))
	}
	if o.cas = strings.Split(o.ca, ","); len(o.cas) != 1 && len(o.cas) != len(o.hops) {
		return nil, cli.Usagef(fs, "-ca has %d entries for the %d proxies of -proxy: give one for all, or one per proxy", len(o.cas), len(o.hops))
	}
	if len(o.hops) > 2 {
		return nil, cli.Usagef(fs, "-proxy: a chain is a relay and an egress proxy, not %d proxies", len(o.hops))
	}
	mode, err := load.ParseMode(o.mode)
	if err != nil {
		return nil, cli.Usagef(fs, "-mode: %v", err)
	}
	switch {
	case o.tunnel != "tcp" && o.tunnel != "udp":
		return nil, cli.Usagef(fs, "-tunnel is tcp or udp, not %q", o.tunnel)
	case explicit["tunnel"] && mode != load.Setup && mode != load.Idle:
		return nil, cli.Usagef(fs, "-tunnel is for -mode setup and idle; -mode %s names its tunnels", mode)
	}
	if o.transport, err = client.ParseTransport(o.via); err != nil {
		return nil, cli.Usagef(fs, "-via: %v", err)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	mode, _ := load.ParseMode(o.mode)
	var hopTLS []*tls.Config // per hop of -proxy
	for i := range o.hops {
		conf := &tls.Config{}
		if ca := o.cas[min(i, len(o.cas)-1)]; ca != "" {
			if conf.RootCAs, err = loadPool(ca); err != nil {
				return fmt.Errorf("-ca: %w", err)
			}
		}
		hopTLS = append(hopTLS, conf)
	}
	cfg := load.Config{
		Mode: mode, UDP: o.tunnel == "udp", Name: o.proxy,
		Conns: o.conns, Tunnels: o.tunnels, Rate: o.rate,
		Warmup: o.warmup, Duration: o.duration, Count: o.count,
		Size: o.size, Timeout: o.timeout, ProxyPID: o.pid,
		Targets: load.Targets{TCP: o.tcpTarget, UDP: o.udpTarget, H3: o.h3Target},
	}
	if o.originCA != "" {
		pool, err := loadPool(o.originCA)
		if err != nil {
			return fmt.Errorf("-origin-ca: %w", err)
		}
		cfg.OriginTLS = &tls.Config{RootCAs: pool}
	}
	if cfg.Targets.TCP == "" || cfg.Targets.UDP == "" || cfg.Targets.H3 == "" {
		origins, err := load.StartOrigins("127.0.0.1")
		if err != nil {
			return fmt.Errorf("starting the origins: %w", err)
		}
		defer origins.Close()
		cfg.Targets = load.Targets{
			TCP: cmp.Or(cfg.Targets.TCP, origins.TCP),
			UDP: cmp.Or(cfg.Targets.UDP, origins.UDP),
			H3:  cmp.Or(cfg.Targets.H3, origins.H3),
		}
		if o.h3Target == "" {
			cfg.OriginTLS = origins.TLS
		}
	}
	if o.progress == "on" || o.progress == "auto" && isTerminal(stderr) {
		cfg.Progress = stderr
	}
	var a masque.Authorizer
	switch {
	case o.authorization != "":
		a = load.StaticAuthorization(o.authorization)
	case o.accountKey != "":
		tokens, err := o.mintTokens(ctx, hopTLS, cfg.Targets.TCP, stderr)
		if err != nil {
			return err
		}
		a = tokens
	}
	cfg.Connect = func(ctx context.Context) (load.Conn, error) { return o.connect(ctx, hopTLS, a) }
	rep, err := load.Run(ctx, cfg)
	if err == nil && o.baseline {
		cfg.Name, cfg.ProxyPID = "direct", 0
		cfg.Connect = func(context.Context) (load.Conn, error) { return load.Direct{}, nil }
		var base *load.Report
		if base, err = load.Run(ctx, cfg); base != nil {
			rep.SetBaseline(base)
		}
	}
	if rep == nil {
		return err
	}
	if werr := write(stdout, rep, o.jsonOut); err == nil {
		err = werr
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted; the report covers the run until then: %w", err)
	}
	if err == nil && rep.Ops == 0 {
		err = fmt.Errorf("no operation succeeded (%d failed)", rep.Errors)
	}
	return err
}

// dialer returns the dialer to the proxy, with authorization from a.
func (o *options) dialer(proxyTLS *tls.Config, a masque.Authorizer) *client.Dialer {
	return &client.Dialer{
		TLSConfig:        proxyTLS,
		Template:         o.template,
		Transport:        o.transport,
		DisableDatagrams: o.disableDatagrams,
		Authorizer:       a,
	}
}

// connect opens a connection to the proxy, trusting it with hopTLS, with
// authorization from a; for a chain, to the egress proxy through a
// connection of its own to the relay (trusted with hopTLS[0], without
// credentials), over the same transport, which closing it closes too.
func (o *options) connect(ctx context.Context, hopTLS []*tls.Config, a masque.Authorizer) (load.Conn, error) {
	egress := len(o.hops) - 1
	d := o.dialer(hopTLS[egress], a)
	if egress > 0 {
		rd := o.dialer(hopTLS[0], nil)
		rd.QUICConfig = h3.RelayQUICConfig() // its datagrams carry the egress connection's packets
		relay, err := rd.Dial(ctx, o.hops[0])
		if err != nil {
			return nil, fmt.Errorf("relay %s: %w", o.hops[0], err)
		}
		d.Relay = relay
		c, err := d.Dial(ctx, o.hops[egress])
		if err != nil {
			relay.Close()
			return nil, fmt.Errorf("egress proxy %s through the relay: %w", o.hops[egress], err)
		}
		return &chainConn{Conn: c, relay: relay}, nil
	}
	c, err := d.Dial(ctx, o.hops[egress])
	if err != nil {
		return nil, err // not a nil *client.Conn in a non-nil load.Conn
	}
	return c, nil
}

// chainConn is a connection to an egress proxy through a connection to an
// ingress relay of its own.
type chainConn struct {
	*client.Conn
	relay *client.Conn
}

// Close closes the connection to the egress, then the one to the relay.
func (c *chainConn) Close() error { return errors.Join(c.Conn.Close(), c.relay.Close()) }

// mintTokens mints -tokens Privacy Pass tokens with -account-key at
// -attester (trusted as the proxy is) for the challenge the proxy answers a
// tunnel request to target with.
func (o *options) mintTokens(ctx context.Context, hopTLS []*tls.Config, target string, stderr io.Writer) (*load.Tokens, error) {
	proxyTLS := hopTLS[len(hopTLS)-1] // tokens are the egress proxy's
	key, err := privacypass.ReadAPIKey(o.accountKey)
	if err != nil {
		return nil, fmt.Errorf("-account-key: %w", err)
	}
	tr := &http.Transport{TLSClientConfig: proxyTLS.Clone()}
	defer tr.CloseIdleConnections()
	pp, err := privacypass.NewClient(privacypass.ClientConfig{
		AttesterURL: o.attester, DirectoryURL: o.issuerDirectory, APIKey: key,
		HTTPClient: &http.Client{Transport: tr, Timeout: o.timeout},
		PoolSize:   -1, // a token minted at each call, by MintTokens
	})
	if err != nil {
		return nil, err
	}
	defer pp.Close()
	probeCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	probe, err := o.connect(probeCtx, hopTLS, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.proxy, err)
	}
	challenges, err := load.Challenges(probeCtx, probe, target)
	probe.Close()
	if err != nil {
		return nil, err
	}
	if challenges == nil {
		return nil, fmt.Errorf("%s admits tunnels without credentials: no tokens to mint", o.proxy)
	}
	start := time.Now()
	tokens, err := load.MintTokens(ctx, pp, challenges, o.tokens, 8)
	var refused *privacypass.MintError
	if errors.As(err, &refused) && refused.StatusCode == http.StatusTooManyRequests {
		return nil, fmt.Errorf("%w: the attester limits how fast an account mints; lower -tokens or raise its rate", err)
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "minted %d tokens in %s\n", o.tokens, time.Since(start).Round(time.Millisecond))
	return tokens, nil
}

func write(w io.Writer, rep *load.Report, asJSON bool) error {
	if !asJSON {
		return rep.WriteText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return certs.Pool(b)
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
