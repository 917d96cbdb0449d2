package runner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/masqued/masqued/privacypass"
)

// client is a program the runner drives through the cases.
type client struct {
	name      string
	needs     feature // of the server
	program   string  // what env builds or finds
	transport string  // masque-client's -via transport
}

var clients = []*client{
	{name: "masque-client/h3", program: "masque-client", transport: "h3"},
	{name: "masque-client/h2", program: "masque-client", transport: "h2", needs: tcpFront},
	{name: "masque-client/h1", program: "masque-client", transport: "h1", needs: tcpFront},
	{name: "masque-go", program: "masquego"},
	{name: "curl", program: "curl", needs: tcpFront | connect},
	{name: "chromium", program: "chromium", needs: tcpFront | connect},
	{name: "firefox", program: "firefox"},
	{name: "connect-ip-go", program: "connectipgo"},
}

// masqueClient returns masque-client's flags for p over the client's
// transport with tunnel ("udp" or "tcp"), then extra.
func (c *cellRun) masqueClient(cl *client, p *proxy, tunnel string, extra ...string) []string {
	return append([]string{"-proxy", p.url, "-ca", p.certFile, "-origin-ca", c.env.origins.caFile,
		"-via", tunnel + "," + cl.transport, "-v", "-timeout", "20s"}, extra...)
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
