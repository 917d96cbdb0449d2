package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ChromiumArgs are the flags that make headless Chromium load pages through
// a proxy (proxyURL, such as https://127.0.0.1:4433), loopback included,
// trusting the certificates whose public keys hash to spkis (see SPKIHash),
// with a fresh profile in userDataDir and nothing else on the network.
func ChromiumArgs(proxyURL, userDataDir string, spkis ...string) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + userDataDir,
		"--proxy-server=" + proxyURL,
		"--proxy-bypass-list=<-loopback>", // proxy loopback too: the origins are local
		"--ignore-certificate-errors-spki-list=" + strings.Join(spkis, ","),
	}
}

// findChromium returns Debian's chromium, or why there is none.
func findChromium() (path, why string) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return "", "chromium is not installed (apt-get install chromium)"
	}
	return path, ""
}

// chromium loads url in headless Chromium through proxyURL, trusting the
// proxy's and the origins' certificates, and returns the page's DOM and the
// load error Chromium logged, if any (such as net::ERR_NO_SUPPORTED_PROXIES).
func (c *cellRun) chromium(ctx context.Context, p *proxy, proxyURL, url string) (dom, loadErr string, err error) {
	if c.env.chromium == "" {
		return "", "", errors.New(c.env.chromiumWhy)
	}
	var spkis []string
	for _, file := range []string{p.certFile, c.env.origins.caFile} {
		pemBytes, err := os.ReadFile(file)
		if err != nil {
			return "", "", err
		}
		spki, err := SPKIHash(pemBytes)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", file, err)
		}
		spkis = append(spkis, spki)
	}
	args := append(ChromiumArgs(proxyURL, filepath.Join(c.dir, "chromium"), spkis...),
		"--disable-quic", "--enable-logging=stderr", "--dump-dom", url)
	dom, stderr, err := c.exec(ctx, c.env.chromium, args...)
	if _, after, ok := strings.Cut(stderr, "Page load failed: "); ok {
		loadErr, _, _ = strings.Cut(after, "\n")
	}
	return dom, loadErr, err
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
