package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// testCase is a test case: how the server is set up, what it must offer,
// and how each client that can play it does.
type testCase struct {
	name, desc string
	opts       proxyOptions
	needs      feature // of the server
	// clientNeeds are further needs of the server for some clients' runs.
	clientNeeds map[string]feature
	// clientOpts replace opts for some clients' runs.
	clientOpts map[string]proxyOptions
	timeout    time.Duration
	// relay: the case also runs a masqued ingress relay (-relay-to) in
	// front of the server, which is then the egress of a two-hop chain
	relay   bool
	clients map[string]runFunc // absent: the client cannot play the case
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

var cases = append([]*testCase{
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
			"firefox": firefoxPage,
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
		desc: "HTTP/3 to an origin inside a CONNECT-UDP tunnel (QUIC in QUIC); Firefox learns the origin's HTTP/3 from Alt-Svc on a page it loaded through CONNECT",
		// Firefox learns of HTTP/3 through a CONNECT tunnel first.
		clientNeeds: map[string]feature{"firefox": connect},
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			return c.fetchHello(ctx, cl, p, "udp", "h3", c.env.origins.h3)
		}), map[string]runFunc{
			"masque-go": masqueGoHello,
			"chromium":  chromiumQUICProxy,
			"firefox":   firefoxH3,
		}),
	},
	{
		name: "quic-forwarding", needs: forwarding, opts: proxyOptions{forward: true}, timeout: 3 * time.Minute,
		desc: "large-transfer's 100 MB over HTTP/3 inside CONNECT-UDP in QUIC-aware forwarded mode (draft-ietf-masque-quic-proxy; masque-client -forward, masqued -forward-listen): checked by SHA-256, and masqued forwarded packets both ways",
		clients: map[string]runFunc{"masque-client/h3": func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			out := filepath.Join(c.dir, "large")
			if _, _, err := c.exec(ctx, c.env.bin["masque-client"], c.masqueClient(cl, p, "udp", "-forward", "-timeout", "150s", "-o", out, "fetch", c.url("https", c.env.origins.h3, "large"))...); err != nil {
				return err
			}
			if err := c.checkLarge(p, out); err != nil {
				return err
			}
			return p.counted(ctx, []string{"masqued_forwarded_packets_total", "direction", "up"}, []string{"masqued_forwarded_packets_total", "direction", "down"})
		}},
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
		desc:    "UDP to the proxy black-holed: the client (-via auto; Firefox's extension in its auto mode) falls back to HTTP/2 over TCP (masque-client then tunnels HTTP/3 in capsules; Firefox its page in CONNECT)",
		clients: map[string]runFunc{"masque-client/h3": h2Fallback, "firefox": firefoxFallback},
	},
	{
		name: "large-transfer", timeout: 3 * time.Minute,
		desc: "100 MB through a tunnel (HTTP/3 in CONNECT-UDP over HTTP/3, else TLS in CONNECT), checked by SHA-256",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			return c.fetchLarge(ctx, cl, p, p)
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
		name: "two-hop", relay: true, timeout: 3 * time.Minute,
		desc: "a two-hop chain: the client reaches the server, the egress, through a masqued ingress relay that tunnels to it alone (-relay-to). masque-client -proxy RELAY,EGRESS fetches large-transfer's 100 MB (HTTP/3 in CONNECT-UDP over HTTP/3 in the relay's CONNECT-UDP, else TLS in CONNECT over TLS in the relay's CONNECT), checked by SHA-256 and seen at the origin from the egress address; masque-go's client, which cannot run its proxy connection through a tunnel, sends an HTTP/3 GET to the egress itself through the relay's CONNECT-UDP tunnel and gets the egress's error answer (a proxy serves no GET)",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			relay, err := c.startRelay(ctx, p)
			if err != nil {
				return err
			}
			chain := *p
			chain.url, chain.certFile = relay.url+","+p.url, relay.certFile+","+p.certFile
			if err := c.fetchLarge(ctx, cl, &chain, p); err != nil {
				return err
			}
			kind := "tcp" // the relay's tunnel to the egress
			if cl.transport == "h3" {
				kind = "udp"
			}
			return relay.counted(ctx, []string{"masqued_tunnels_total", "kind", kind})
		}), map[string]runFunc{"masque-go": masqueGoToEgress}),
	},
	{
		name: "auth-privacypass", needs: auth, opts: proxyOptions{auth: true},
		// A browser's tunnels share a connection whose first request's
		// token admits them all (see browser/firefox).
		clientOpts: map[string]proxyOptions{"firefox": {auth: true, perConn: true}},
		desc:       "a tunnel admitted with a Privacy Pass token minted by masqued's issuer for its demo account (Firefox: the extension's pool, one token per connection with -pp-per-connection, refilled after the page)",
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
			"firefox": firefoxTokens,
		}),
	},
	{
		name: "auth-missing", needs: auth, opts: proxyOptions{auth: true},
		desc: "a tunnel without a token: 407 (curl also shows the PrivateToken challenge; the other clients report only the status), and nothing reaches the origin",
		clients: with(refusals("407", "udp", hasPrivateToken), map[string]runFunc{
			"firefox": firefoxRefused([]string{"masqued_privacypass_redemptions_total", "result", "no_token"},
				[]string{"masqued_tunnel_errors_total", "front", "h3"}),
		}),
	},
	{
		name: "auth-replay", needs: auth, opts: proxyOptions{auth: true},
		clientOpts: map[string]proxyOptions{"firefox": {auth: true, perConn: true}},
		desc:       "a token used twice: the first tunnel opens, the second is refused; the origin sees one request (Firefox: the extension's \"Check the proxy\", also without a token)",
		clients: map[string]runFunc{
			"firefox": firefoxReplay,
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
			"firefox": firefoxPage,
		}),
	},
	{
		name: "geo-hint", needs: geo, opts: proxyOptions{geo: true, hint: true},
		desc: "the GeoIP database puts the client in London, its Sec-CH-Geohash hint (" + manchesterHint + ") in Manchester, in the same country: the origin sees the Manchester pool's egress address (127.0.0.3)",
		clients: with(masqueClients(func(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
			return c.fetchHello(ctx, cl, p, "tcp", "https", c.env.origins.https, "-geohash", manchesterHint)
		}), map[string]runFunc{
			"curl": func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
				body, _, err := c.curl(ctx, p, "--fail", "--proxy-header", "Sec-CH-Geohash: "+manchesterHint, c.url("https", c.env.origins.https, "hello"))
				if err != nil {
					return err
				}
				return c.checkBody(p, body, hello(c.id, "https"))
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
			"firefox": firefoxRefused([]string{"masqued_tunnel_errors_total", "front", "h3", "proxy_status", "destination_ip_prohibited"}),
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
		desc: "a browser loads an https page whose script sets the DOM; the origin saw both requests from the proxy's egress address",
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
			"firefox": firefoxPage,
		},
	},
}, connectIPCases...)

// fetchLarge fetches /CELL/large with masque-client through via (a proxy,
// or a chain) and checks it by SHA-256, and its egress at p: HTTP/3 in
// CONNECT-UDP over HTTP/3, else TLS in CONNECT.
func (c *cellRun) fetchLarge(ctx context.Context, cl *client, via, p *proxy) error {
	tunnel, origin := "tcp", c.env.origins.https
	if cl.transport == "h3" {
		tunnel, origin = "udp", c.env.origins.h3
	}
	out := filepath.Join(c.dir, "large")
	if _, _, err := c.exec(ctx, c.env.bin["masque-client"], c.masqueClient(cl, via, tunnel, "-timeout", "150s", "-o", out, "fetch", c.url("https", origin, "large"))...); err != nil {
		return err
	}
	return c.checkLarge(p, out)
}

// statusLine is masque-go's client's report of a response.
var statusLine = regexp.MustCompile(`(?m)^bytes=\d+ .*status=(\d+)$`)

// masqueGoToEgress is two-hop for masque-go's client: through a CONNECT-UDP
// tunnel of the relay it sends an HTTP/3 GET to the egress proxy itself,
// trusting the egress's certificate. A proxy answers a GET with a 4xx (and
// masque-go's client then exits non-zero): the answer shows that the QUIC
// connection to the egress ran through the relay. The relay counts the
// tunnel, and no origin sees anything.
func masqueGoToEgress(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	relay, err := c.startRelay(ctx, p)
	if err != nil {
		return err
	}
	_, stderr, err := c.exec(ctx, c.env.bin["masquego"], "client", "-template", relay.template, "-ca", relay.certFile, "-origin-ca", p.certFile, p.url+"/")
	m := statusLine.FindStringSubmatch(stderr)
	if m == nil || m[1][0] != '4' {
		return fmt.Errorf("masque-go's client had no 4xx answer from the egress (%v)", errOr(err, "exit 0"))
	}
	fmt.Fprintf(c.log, "-- the egress answered %s through the relay\n", m[1])
	if err := relay.counted(ctx, []string{"masqued_tunnels_total", "kind", "udp"}); err != nil {
		return err
	}
	return c.checkNone()
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

// h2Fallback puts the proxy's TCP port behind a relay whose UDP port of the
// same number drops everything, so HTTP/3 never answers: masque-client -via
// auto must fall back to HTTP/2 and still fetch over HTTP/3 in CONNECT-UDP.
func h2Fallback(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	front, stop, err := c.blackholed(p)
	if err != nil {
		return err
	}
	defer stop()
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

// blackholed puts p's TCP port behind a relay whose UDP port drops
// everything (blackholedFront), so that HTTP/3 to it never answers.
func (c *cellRun) blackholed(p *proxy) (netip.AddrPort, func(), error) {
	front, stop, err := blackholedFront(p.addr)
	if err == nil {
		fmt.Fprintf(c.log, "-- %s: TCP relayed to %s, UDP dropped\n", front, p.addr)
	}
	return front, stop, err
}
