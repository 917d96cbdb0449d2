package runner

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/masqued/masqued/privacypass"
)

// testCase is a test case: how the server is set up, what it must offer,
// and how each client that can play it does.
type testCase struct {
	name, desc string
	opts       proxyOptions
	needs      feature // of the server
	// clientNeeds are further needs of the server for some clients' runs.
	clientNeeds map[string]feature
	timeout     time.Duration
	clients     map[string]runFunc // absent: the client cannot play the case
}

// echoPackets is how many packets connect-udp sends.
const echoPackets = 10

// runFunc plays a case with one client against a running proxy and
// returns nil if the pass criterion holds.
type runFunc func(ctx context.Context, c *cellRun, cl *client, p *proxy) error

// Case describes a test case, for documentation and -list.
type Case struct{ Name, Description string }

// Cases lists the test cases in the order the runner reports them.
func Cases() []Case {
	var cs []Case
	for _, tc := range cases {
		cs = append(cs, Case{tc.name, tc.desc})
	}
	return cs
}

// Clients and Servers list the clients' and servers' names.
func Clients() []string { return names(clients, func(c *client) string { return c.name }) }
func Servers() []string { return names(servers, func(s *server) string { return s.name }) }

func names[T any](ts []T, name func(T) string) []string {
	var ns []string
	for _, t := range ts {
		ns = append(ns, name(t))
	}
	return ns
}

// masqueClients is the same run for masque-client over each transport.
func masqueClients(f runFunc) map[string]runFunc {
	return map[string]runFunc{"masque-client/h3": f, "masque-client/h2": f, "masque-client/h1": f}
}

// with adds more clients' runs to m.
func with(m map[string]runFunc, more map[string]runFunc) map[string]runFunc {
	for k, v := range more {
		m[k] = v
	}
	return m
}

var cases = []*testCase{
	{
		name: "connect-tcp", needs: connect,
		desc: "a CONNECT tunnel to an HTTPS origin; the origin serves the page, seeing the proxy's egress address",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			return c.fetchHello(ctx, cl, p, "tcp", "https", c.env.origins.https)
		}), map[string]runFunc{
			"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				return c.curlHello(ctx, p, "https", c.env.origins.https)
			},
			"chromium": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				return c.chromiumHello(ctx, p, "https", c.env.origins.https)
			},
		}),
	},
	{
		name: "http-forward", needs: connect,
		desc: "a plain http:// request the proxy forwards (absolute-form GET), seen at the origin from the egress address",
		clients: map[string]runFunc{
			"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				return c.curlHello(ctx, p, "http", c.env.origins.http)
			},
			"chromium": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				return c.chromiumHello(ctx, p, "http", c.env.origins.http)
			},
		},
	},
	{
		name: "connect-udp",
		desc: "UDP packets through CONNECT-UDP (masque-client serve's SOCKS5 UDP relay; masque-go's udp peer) to an echo origin; each comes back, and the origin saw them from the egress address",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			socks, err := c.serveLocal(ctx, cl, p, "udp", "-socks5", "socks5")
			if err != nil {
				return err
			}
			if err := socksUDP(ctx, socks, c.env.origins.echo, c.id, echoPackets); err != nil {
				return err
			}
			return c.checkEgress(p, echoPackets)
		}), map[string]runFunc{
			"masque-go": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				_, _, err := c.exec(ctx, c.env.bin["masquego"], "udp", "-template", p.template, "-ca", p.certFile,
					"-n", fmt.Sprint(echoPackets), "-prefix", c.id, c.env.origins.echo.String())
				if err != nil {
					return err
				}
				return c.checkEgress(p, echoPackets)
			},
		}),
	},
	{
		name: "h3-over-connect-udp",
		desc: "HTTP/3 to an origin inside a CONNECT-UDP tunnel (QUIC in QUIC)",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			return c.fetchHello(ctx, cl, p, "udp", "h3", c.env.origins.h3)
		}), map[string]runFunc{
			"masque-go": masqueGoHello,
			"chromium":  chromiumQUICProxy,
		}),
	},
	{
		name: "capsule-fallback", needs: capsules,
		desc: "CONNECT-UDP with HTTP Datagrams turned off: the payloads travel in DATAGRAM capsules on the request stream",
		clients: masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			return c.fetchHello(ctx, cl, p, "udp", "h3", c.env.origins.h3, "-disable-datagrams")
		}),
	},
	{
		name: "h2-fallback", needs: tcpFront,
		desc:    "UDP to the proxy black-holed: the client (-via auto) falls back to HTTP/2 over TCP and tunnels HTTP/3 in capsules",
		clients: map[string]runFunc{"masque-client/h3": h2Fallback},
	},
	{
		name: "large-transfer", timeout: 3 * time.Minute,
		desc: "100 MB through a tunnel (HTTP/3 in CONNECT-UDP over HTTP/3, else TLS in CONNECT), checked by SHA-256",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			tunnel, origin := "tcp", c.env.origins.https
			if cl.transport == "h3" {
				tunnel, origin = "udp", c.env.origins.h3
			}
			out := filepath.Join(c.dir, "large")
			if _, _, err := c.exec(ctx, c.env.bin["masque-client"], c.masqueClient(cl, p, tunnel, "-timeout", "150s", "-o", out, "fetch", c.url("https", origin, "large"))...); err != nil {
				return err
			}
			return c.checkLarge(p, out)
		}), map[string]runFunc{
			"masque-go": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				out := filepath.Join(c.dir, "large")
				if _, _, err := c.masqueGo(ctx, p, p.template, "-o", out, c.url("https", c.env.origins.h3, "large")); err != nil {
					return err
				}
				return c.checkLarge(p, out)
			},
			"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				out := filepath.Join(c.dir, "large")
				if _, _, err := c.curl(ctx, p, "--fail", "--max-time", "150", "-o", out, c.url("https", c.env.origins.https, "large")); err != nil {
					return err
				}
				return c.checkLarge(p, out)
			},
		}),
	},
	{
		name: "many-tunnels",
		// masque-client's tunnels here are CONNECT; masque-go's CONNECT-UDP.
		clientNeeds: map[string]feature{"masque-client/h3": connect, "masque-client/h2": connect, "masque-client/h1": connect},
		desc:        "200 tunnels open at once: CONNECT through masque-client serve's HTTP proxy or curl --parallel, where the origin holds each request until all 200 are in; CONNECT-UDP from masque-go's udp peer on one connection, each tunnel echoing from a source port of its own",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			local, err := c.serveLocal(ctx, cl, p, "tcp", "-http", "http")
			if err != nil {
				return err
			}
			if err := c.manyThrough(ctx, local); err != nil {
				return err
			}
			return c.checkSources(p, manyTunnels)
		}), map[string]runFunc{
			"masque-go": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				_, _, err := c.exec(ctx, c.env.bin["masquego"], "udp", "-template", p.template, "-ca", p.certFile,
					"-tunnels", fmt.Sprint(manyTunnels), "-n", "1", "-prefix", c.id, c.env.origins.echo.String())
				if err != nil {
					return err
				}
				return c.checkSources(p, manyTunnels)
			},
			"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				args := []string{"--fail", "--max-time", "80", "--parallel", "--parallel-immediate", "--parallel-max", fmt.Sprint(manyTunnels), "-w", "%{http_code}\n"}
				for i := range manyTunnels {
					args = append(args, "-o", "/dev/null", c.url("https", c.env.origins.https, fmt.Sprintf("hold/%d", i)))
				}
				out, _, err := c.curl(ctx, p, args...)
				if err != nil {
					return err
				}
				if n := strings.Count(out, "200\n"); n != manyTunnels {
					return fmt.Errorf("%d of %d requests answered 200", n, manyTunnels)
				}
				return c.checkSources(p, manyTunnels)
			},
		}),
	},
	{
		name: "auth-privacypass", needs: auth, opts: proxyOptions{auth: true},
		desc: "a tunnel admitted with a Privacy Pass token minted by masqued's issuer for its demo account",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			return c.fetchHello(ctx, cl, p, "udp", "h3", c.env.origins.h3,
				"-account-key", p.pp.keyFile, "-attester", p.pp.attester, "-issuer-directory", p.pp.directory)
		}), map[string]runFunc{
			"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				header, err := c.curlToken(ctx, p)
				if err != nil {
					return err
				}
				body, _, err := c.curl(ctx, p, "--fail", "--proxy-header", "Proxy-Authorization: "+header, c.url("https", c.env.origins.https, "hello"))
				if err != nil {
					return err
				}
				return c.checkBody(p, body, hello(c.id, "https"))
			},
		}),
	},
	{
		name: "auth-missing", needs: auth, opts: proxyOptions{auth: true},
		desc:    "a tunnel without a token: 407 (curl also shows the PrivateToken challenge; the other clients report only the status), and nothing reaches the origin",
		clients: refusals("407", "udp", hasPrivateToken),
	},
	{
		name: "auth-replay", needs: auth, opts: proxyOptions{auth: true},
		desc: "a token used twice: the first tunnel opens, the second is refused; the origin sees one request",
		clients: map[string]runFunc{
			"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				header, err := c.curlToken(ctx, p)
				if err != nil {
					return err
				}
				url := c.url("https", c.env.origins.https, "hello")
				if _, _, err := c.curl(ctx, p, "--fail", "--proxy-header", "Proxy-Authorization: "+header, url); err != nil {
					return fmt.Errorf("first use of the token: %w", err)
				}
				code, _, err := c.curlConnect(ctx, p, url, "--proxy-header", "Proxy-Authorization: "+header)
				if err != nil {
					return err
				}
				if code != "407" {
					return fmt.Errorf("the replayed token got %s, want 407", code)
				}
				saw := c.env.origins.saw(c.id)
				if len(saw) != 1 {
					return fmt.Errorf("the origin saw %d requests, want 1", len(saw))
				}
				return c.checkEgress(p, 1)
			},
		},
	},
	{
		name: "geo-egress", needs: geo, opts: proxyOptions{geo: true},
		desc: "the GeoIP database puts the client in London: the origin sees the London pool's egress address (127.0.0.2), not the default (127.0.0.9)",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			return c.fetchHello(ctx, cl, p, "tcp", "https", c.env.origins.https)
		}), map[string]runFunc{
			"masque-go": masqueGoHello,
			"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				return c.curlHello(ctx, p, "https", c.env.origins.https)
			},
			"chromium": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				return c.chromiumHello(ctx, p, "https", c.env.origins.https)
			},
		}),
	},
	{
		name: "ssrf-blocked", needs: policy, opts: proxyOptions{strict: true},
		desc: "a proxy that refuses private targets: a tunnel to the loopback origin gets 403, and the origin sees nothing",
		clients: with(refusals("403", "tcp", nil), map[string]runFunc{
			"chromium": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				dom, loadErr, err := c.chromium(ctx, p, p.url, c.url("https", c.env.origins.https, "page"))
				if err != nil {
					return err
				}
				if strings.Contains(dom, strings.TrimSpace(hello(c.id, "https"))) || loadErr == "" {
					return fmt.Errorf("the page loaded (load error %q)", loadErr)
				}
				return c.checkNone()
			},
		}),
	},
	{
		name: "bad-template",
		desc: "a CONNECT-UDP request whose path swaps host and port: 400, and nothing reaches the origin",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			_, stderr, err := c.exec(ctx, c.env.bin["masque-client"], c.masqueClient(cl, p, "udp",
				"-udp-template", "https://{proxy}/.well-known/masque/udp/{target_port}/{target_host}/",
				"fetch", c.url("https", c.env.origins.h3, "hello"))...)
			return c.refused(err, stderr, "proxy answered 400")
		}), map[string]runFunc{
			"masque-go": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				_, stderr, err := c.masqueGo(ctx, p, p.url+"/.well-known/masque/udp/{target_port}/{target_host}/", c.url("https", c.env.origins.h3, "hello"))
				return c.refused(err, stderr, "400")
			},
		}),
	},
	{
		name: "browser-page", needs: connect,
		desc: "Chromium loads an https page whose script sets the DOM; the origin saw both requests from the proxy's egress address",
		clients: map[string]runFunc{
			"chromium": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				dom, loadErr, err := c.chromium(ctx, p, p.url, c.url("https", c.env.origins.https, "page"))
				if err != nil {
					return err
				}
				if loadErr != "" {
					return fmt.Errorf("chromium: %s", loadErr)
				}
				for _, want := range []string{strings.TrimSpace(hello(c.id, "https")), subResourceText} {
					if !strings.Contains(dom, want) {
						return fmt.Errorf("the DOM lacks %q: %s", want, clip(dom))
					}
				}
				return c.checkEgress(p, 2)
			},
		},
	},
}

// masqueGoHello fetches /CELL/hello with masque-go's client over HTTP/3
// inside CONNECT-UDP, and checks the body and the egress.
func masqueGoHello(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	body, _, err := c.masqueGo(ctx, p, p.template, c.url("https", c.env.origins.h3, "hello"))
	if err != nil {
		return err
	}
	return c.checkBody(p, body, hello(c.id, "h3"))
}

// refusals are the runs of a case whose pass criterion is that the proxy
// refuses the tunnel with status (masque-client asking for a tunnel of kind
// tunnel) and nothing reaches the origin; with challenged, curl also checks
// the Proxy-Authenticate challenges it saw.
func refusals(status, tunnel string, challenged func([]string) bool) map[string]runFunc {
	return with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
		url := c.url("https", c.env.origins.https, "hello")
		if tunnel == "udp" {
			url = c.url("https", c.env.origins.h3, "hello")
		}
		_, stderr, err := c.exec(ctx, c.env.bin["masque-client"], c.masqueClient(cl, p, tunnel, "fetch", url)...)
		return c.refused(err, stderr, "proxy answered "+status)
	}), map[string]runFunc{
		"masque-go": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
			_, stderr, err := c.masqueGo(ctx, p, p.template, c.url("https", c.env.origins.h3, "hello"))
			return c.refused(err, stderr, "server responded with "+status)
		},
		"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
			code, challenges, err := c.curlConnect(ctx, p, c.url("https", c.env.origins.https, "hello"))
			switch {
			case err != nil:
				return err
			case code != status:
				return fmt.Errorf("CONNECT got %s, want %s", code, status)
			case challenged != nil && !challenged(challenges):
				return fmt.Errorf("unexpected challenges %q", challenges)
			}
			return c.checkNone()
		},
	})
}

// lookup finds a cell's case, client and server.
func lookup(cell *Cell) (*testCase, *client, *server) {
	var tc *testCase
	var cl *client
	var sv *server
	for _, x := range cases {
		if x.name == cell.Case {
			tc = x
		}
	}
	for _, x := range clients {
		if x.name == cell.Client {
			cl = x
		}
	}
	for _, x := range servers {
		if x.name == cell.Server {
			sv = x
		}
	}
	return tc, cl, sv
}

// unsupported says why the cell cannot be played, or "".
func unsupported(tc *testCase, cl *client, sv *server) string {
	if tc.clients[cl.name] == nil {
		return cl.name + " has no way to play " + tc.name
	}
	if missing := (tc.needs | tc.clientNeeds[cl.name] | cl.needs) &^ sv.has; missing != 0 {
		return sv.name + " lacks " + missing.String()
	}
	return ""
}

// programs are what a cell runs.
func programs(cell Cell) []string {
	_, cl, sv := lookup(&cell)
	p := []string{cl.program}
	if sv.name == "masque-go" {
		return append(p, "masquego")
	}
	return append(p, "masqued")
}

// run plays the cell: starts the server, runs the client, stops both.
func (c *cellRun) run(ctx context.Context, tc *testCase, cl *client, sv *server) (err error) {
	timeout := tc.timeout
	if timeout == 0 {
		timeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	defer func() {
		if serr := c.stopAll(); err == nil {
			err = serr
		}
	}()
	p, err := sv.start(ctx, c, tc.opts)
	if err != nil {
		return fmt.Errorf("starting %s: %w", sv.name, err)
	}
	return tc.clients[cl.name](ctx, c, cl, p)
}

// fetchHello fetches /CELL/hello with masque-client through a tunnel
// ("udp" or "tcp") to origin, and checks the body and the egress.
func (c *cellRun) fetchHello(ctx context.Context, cl *client, p *proxy, tunnel, proto string, origin netip.AddrPort, extra ...string) error {
	args := c.masqueClient(cl, p, tunnel, append(extra, "fetch", c.url("https", origin, "hello"))...)
	body, _, err := c.exec(ctx, c.env.bin["masque-client"], args...)
	if err != nil {
		return err
	}
	return c.checkBody(p, body, hello(c.id, proto))
}

// checkBody checks a hello body and that it came from the egress address.
func (c *cellRun) checkBody(p *proxy, got, want string) error {
	if got != want {
		return fmt.Errorf("body %q, want %q", clip(got), want)
	}
	return c.checkEgress(p, 1)
}

// checkLarge checks large-transfer's file by size and SHA-256, then removes it.
func (c *cellRun) checkLarge(p *proxy, file string) error {
	defer os.Remove(file)
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if n != largeSize || [sha256.Size]byte(h.Sum(nil)) != c.env.origins.largeSum {
		return fmt.Errorf("got %d bytes with SHA-256 %x, want %d with %x", n, h.Sum(nil), largeSize, c.env.origins.largeSum)
	}
	fmt.Fprintf(c.log, "-- %d bytes, SHA-256 %x as sent\n", n, h.Sum(nil))
	return c.checkEgress(p, 1)
}

// refused checks that a client failed with want in its error output and
// that nothing reached the origin.
func (c *cellRun) refused(err error, stderr, want string) error {
	if err == nil {
		return fmt.Errorf("the client succeeded, want %q", want)
	}
	if !strings.Contains(stderr, want) {
		return fmt.Errorf("the client failed without %q: %w", want, err)
	}
	return c.checkNone()
}

// masqueGo runs masque-go's client with template and extra arguments.
func (c *cellRun) masqueGo(ctx context.Context, p *proxy, template string, args ...string) (string, string, error) {
	return c.exec(ctx, c.env.bin["masquego"], append([]string{"client", "-template", template, "-ca", p.certFile, "-origin-ca", c.env.origins.caFile}, args...)...)
}

// serveLocal starts masque-client serve with listen ("-socks5" or "-http")
// on a free port and returns the address it prints after name.
func (c *cellRun) serveLocal(ctx context.Context, cl *client, p *proxy, tunnel, listen, name string) (string, error) {
	sp, err := c.start(ctx, c.env.bin["masque-client"], c.masqueClient(cl, p, tunnel, "serve", listen, "127.0.0.1:0")...)
	if err != nil {
		return "", err
	}
	return sp.Line(name + " listening on ")
}

// manyThrough makes manyTunnels requests at once through an HTTP proxy, each
// in a CONNECT tunnel of its own, and checks that each is answered.
func (c *cellRun) manyThrough(ctx context.Context, httpProxy string) error {
	pool, err := loadPool(c.env.origins.caFile)
	if err != nil {
		return err
	}
	proxyURL := &url.URL{Scheme: "http", Host: httpProxy}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	errs := make(chan error, manyTunnels)
	var wg sync.WaitGroup
	for i := range manyTunnels {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("https", c.env.origins.https, fmt.Sprintf("hold/%d", i)), nil)
			if err != nil {
				errs <- err
				return
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil && (resp.StatusCode != http.StatusOK || string(body) != hello(c.id, "https")) {
				err = fmt.Errorf("%s: %q", resp.Status, body)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	fmt.Fprintf(c.log, "-- %d of %d requests failed\n", len(failed), manyTunnels)
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d requests failed, the first: %w", len(failed), manyTunnels, failed[0])
	}
	return nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificate in %s", file)
	}
	return pool, nil
}

// h2Fallback puts the proxy's TCP port behind a relay whose UDP port of the
// same number drops everything, so HTTP/3 never answers: masque-client -via
// auto must fall back to HTTP/2 and still fetch over HTTP/3 in CONNECT-UDP.
func h2Fallback(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	front, stop, err := blackholedFront(p.addr)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(c.log, "-- %s: TCP relayed to %s, UDP dropped\n", front, p.addr)
	q := *p
	q.url = "https://" + front.String()
	args := []string{"-proxy", q.url, "-ca", p.certFile, "-origin-ca", c.env.origins.caFile, "-via", "udp,auto", "-v", "-timeout", "60s",
		"fetch", c.url("https", c.env.origins.h3, "hello")}
	body, stderr, err := c.exec(ctx, c.env.bin["masque-client"], args...)
	if err != nil {
		return err
	}
	if !strings.Contains(stderr, "not over HTTP/3") {
		return errors.New("masque-client did not report a fallback from HTTP/3")
	}
	return c.checkBody(p, body, hello(c.id, "h3"))
}

// blackholedFront listens on one port number for TCP, relayed to target,
// and UDP, read and dropped; stop ends both and waits for the relays.
func blackholedFront(target netip.AddrPort) (netip.AddrPort, func(), error) {
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return netip.AddrPort{}, nil, err
		}
		addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		l, err := net.Listen("tcp", addr.String())
		if err != nil {
			pc.Close()
			if try < 10 {
				continue
			}
			return netip.AddrPort{}, nil, err
		}
		var wg sync.WaitGroup
		var mu sync.Mutex // guards conns and stopped
		conns := map[net.Conn]bool{}
		stopped := false
		track := func(c net.Conn, add bool) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case add && stopped: // accepted as stop ran: close it now
				c.Close()
			case add:
				conns[c] = true
			default:
				delete(conns, c)
			}
		}
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := pc.ReadFrom(buf); errors.Is(err, net.ErrClosed) {
					return
				}
			}
		})
		wg.Go(func() {
			for {
				in, err := l.Accept()
				if err != nil {
					return
				}
				out, err := net.Dial("tcp", target.String())
				if err != nil {
					in.Close()
					continue
				}
				track(in, true)
				track(out, true)
				for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
					wg.Go(func() {
						io.Copy(pair[0], pair[1])
						pair[0].Close()
						pair[1].Close()
						track(pair[0], false)
					})
				}
			}
		})
		stop := func() {
			pc.Close()
			l.Close()
			mu.Lock()
			stopped = true
			for c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		}
		return addr, stop, nil
	}
}

// chromiumQUICProxy asks Chromium to use the proxy as a quic:// proxy, the
// only way it could reach an origin over HTTP/3 through one. Chromium
// refuses such proxies (ERR_NO_SUPPORTED_PROXIES): the cell is unsupported
// by the client, which the run finds out rather than assumes.
func chromiumQUICProxy(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	dom, loadErr, err := c.chromium(ctx, p, "quic://"+p.addr.String(), c.url("https", c.env.origins.https, "page"))
	if err != nil {
		return err
	}
	if loadErr == "net::ERR_NO_SUPPORTED_PROXIES" {
		return &unsupportedError{"Chromium refuses quic:// proxies (" + loadErr + ")"}
	}
	return fmt.Errorf("chromium did not refuse the quic:// proxy (%q); its DOM: %s", loadErr, clip(dom))
}

// chromiumHello loads /CELL/page from origin and checks the DOM and egress.
func (c *cellRun) chromiumHello(ctx context.Context, p *proxy, scheme string, origin netip.AddrPort) error {
	dom, loadErr, err := c.chromium(ctx, p, p.url, c.url(scheme, origin, "page"))
	if err != nil {
		return err
	}
	if want := strings.TrimSpace(hello(c.id, scheme)); !strings.Contains(dom, want) {
		return fmt.Errorf("the DOM lacks %q (load error %q): %s", want, loadErr, clip(dom))
	}
	return c.checkEgress(p, 1)
}

// curl runs curl with p as its HTTPS proxy.
func (c *cellRun) curl(ctx context.Context, p *proxy, args ...string) (string, string, error) {
	return c.exec(ctx, "curl", append([]string{"-sS", "-v", "--max-time", "60", "-x", p.url,
		"--proxy-cacert", p.certFile, "--cacert", c.env.origins.caFile}, args...)...)
}

// curlHello fetches /CELL/hello with curl and checks the body and egress.
func (c *cellRun) curlHello(ctx context.Context, p *proxy, scheme string, origin netip.AddrPort) error {
	body, _, err := c.curl(ctx, p, "--fail", c.url(scheme, origin, "hello"))
	if err != nil {
		return err
	}
	return c.checkBody(p, body, hello(c.id, scheme))
}

// curlConnect makes curl CONNECT to url's origin, expecting the proxy to
// refuse, and returns the CONNECT's status and the Proxy-Authenticate
// challenges.
func (c *cellRun) curlConnect(ctx context.Context, p *proxy, url string, args ...string) (string, []string, error) {
	out, stderr, err := c.curl(ctx, p, append(args, "-o", os.DevNull, "-w", "%{http_connect}", url)...)
	if err == nil {
		return "", nil, errors.New("curl's request went through, want a refusal")
	}
	var challenges []string
	for l := range strings.Lines(stderr) {
		if v, ok := cutHeader(l, "< Proxy-Authenticate:"); ok {
			challenges = append(challenges, v)
		}
	}
	return strings.TrimSpace(out), challenges, nil
}

// cutHeader returns the value of a header line in curl -v's output.
func cutHeader(line, prefix string) (string, bool) {
	if len(line) < len(prefix) || !strings.EqualFold(line[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(line[len(prefix):]), true
}

func hasPrivateToken(challenges []string) bool {
	for _, ch := range challenges {
		if strings.HasPrefix(ch, "PrivateToken ") {
			return true
		}
	}
	return false
}

// curlToken gets the proxy's challenge as curl sees it (a 407) and mints a
// token for it with masqued's demo account: the Proxy-Authorization value.
func (c *cellRun) curlToken(ctx context.Context, p *proxy) (string, error) {
	code, challenges, err := c.curlConnect(ctx, p, c.url("https", c.env.origins.https, "hello"))
	if err != nil {
		return "", err
	}
	if code != "407" || !hasPrivateToken(challenges) {
		return "", fmt.Errorf("without a token: %s with challenges %q, want 407 with PrivateToken", code, challenges)
	}
	key, err := privacypass.ReadAPIKey(p.pp.keyFile)
	if err != nil {
		return "", err
	}
	pool, err := loadPool(p.certFile) // the in-process issuer uses the proxy's certificate
	if err != nil {
		return "", err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	pc, err := privacypass.NewClient(privacypass.ClientConfig{
		AttesterURL: p.pp.attester, DirectoryURL: p.pp.directory, APIKey: key,
		HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}, PoolSize: -1,
	})
	if err != nil {
		return "", err
	}
	defer pc.Close()
	return pc.Authorize(ctx, challenges)
}
