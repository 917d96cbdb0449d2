package runner

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// The Firefox cells drive real Firefox ESR through the extension of
// browser/firefox, which returns a "masque" ProxyInfo: Firefox then tunnels
// TCP in CONNECT and, for an origin it knows speaks HTTP/3, UDP in
// CONNECT-UDP, both over HTTP/3 to the proxy. Each cell checks the page
// Firefox rendered, what the origins saw, and what masqued counted.

// firefoxDefault is the extension set up as a user would: HTTP/3, falling
// back to the HTTPS front.
func firefoxDefault(p *proxy) ffSettings { return ffSettings{proxy: p, mode: "auto"} }

// ffPage loads /CELL/page of origin in Firefox and checks that the DOM shows
// it came over proto with its sub-resource, that the origins saw want
// requests from the egress address, and that masqued counted tunnels of
// kind over front.
func (c *cellRun) ffPage(ctx context.Context, f *firefox, p *proxy, origin netip.AddrPort, proto string, want int, front, kind string) error {
	dom, loadErr, err := f.load(ctx, c.url("https", origin, "page"))
	if err != nil {
		return err
	}
	if loadErr != "" {
		return fmt.Errorf("firefox: %s", loadErr)
	}
	for _, s := range []string{strings.TrimSpace(hello(c.id, proto)), subResourceText} {
		if !strings.Contains(dom, s) {
			return fmt.Errorf("the DOM lacks %q: %s", s, clip(dom))
		}
	}
	if err := c.checkEgress(p, want); err != nil {
		return err
	}
	return p.counted(ctx, []string{"masqued_tunnels_total", "front", front, "kind", kind})
}

// firefoxPage is a case's run: the page over an HTTPS origin, in CONNECT
// over HTTP/3; with it, the sub-resource (want 2 requests).
func firefoxPage(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	f, err := c.startFirefox(ctx, firefoxDefault(p))
	if err != nil {
		return err
	}
	return c.ffPage(ctx, f, p, c.env.origins.https, "https", 2, "h3", "tcp")
}

// firefoxH3 loads a page whose answer carries Alt-Svc h3, then loads it
// again until Firefox uses HTTP/3 to the origin, inside CONNECT-UDP.
func firefoxH3(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	f, err := c.startFirefox(ctx, firefoxDefault(p))
	if err != nil {
		return err
	}
	url := c.url("https", c.env.origins.https, "alt/page")
	want := strings.TrimSpace(hello(c.id, "h3"))
	for i := 0; ; i++ {
		dom, loadErr, err := f.load(ctx, url)
		if err != nil {
			return err
		}
		if loadErr != "" {
			return fmt.Errorf("load %d: firefox: %s", i+1, loadErr)
		}
		if strings.Contains(dom, want) {
			fmt.Fprintf(c.log, "-- HTTP/3 to the origin at load %d\n", i+1)
			break
		}
		// Firefox checks the alternative in the background before using
		// it; the cell's deadline bounds the wait.
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %d loads Firefox still reached the origin without HTTP/3: %s", i+1, clip(dom))
		case <-time.After(300 * time.Millisecond):
		}
	}
	if err := c.checkEgress(p, 2); err != nil {
		return err
	}
	return p.counted(ctx, []string{"masqued_tunnels_total", "front", "h3", "kind", "udp"})
}

// firefoxRefused loads the page and checks that Firefox could not, that
// nothing reached the origins and that masqued counted the refusals.
func firefoxRefused(counters ...[]string) runFunc {
	return func(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
		f, err := c.startFirefox(ctx, firefoxDefault(p))
		if err != nil {
			return err
		}
		dom, loadErr, err := f.load(ctx, c.url("https", c.env.origins.https, "page"))
		if err != nil {
			return err
		}
		if loadErr == "" || strings.Contains(dom, strings.TrimSpace(hello(c.id, "https"))) {
			return fmt.Errorf("the page loaded (load error %q)", loadErr)
		}
		fmt.Fprintf(c.log, "-- firefox: %s\n", loadErr)
		if err := c.checkNone(); err != nil {
			return err
		}
		return p.counted(ctx, counters...)
	}
}

// firefoxTokens has the extension mint tokens through masqued's attester
// with the demo account, loads the page with them, and checks that its pool
// refilled in the background.
func firefoxTokens(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	const pool = 3
	f, err := c.startFirefox(ctx, ffSettings{proxy: p, mode: "h3", pp: p.pp, poolSize: pool})
	if err != nil {
		return err
	}
	full := func(t ffTokens) bool { return t.Pooled >= pool }
	before, err := f.waitTokens(ctx, "a full pool", full)
	if err != nil {
		return err
	}
	if err := c.ffPage(ctx, f, p, c.env.origins.https, "https", 2, "h3", "tcp"); err != nil {
		return err
	}
	if err := p.counted(ctx, []string{"masqued_privacypass_redemptions_total", "result", "admitted"}); err != nil {
		return err
	}
	// The page's site is a connection of its own, with a token of its own;
	// the pool then mints one more for each token taken since.
	after, err := f.waitTokens(ctx, "a token presented for the page, then the pool refilled", func(t ffTokens) bool {
		return t.Presented > before.Presented && full(t) && t.Minted >= before.Minted+t.Presented-before.Presented
	})
	fmt.Fprintf(c.log, "-- tokens before the page %+v, after %+v\n", before, after)
	return err
}

// firefoxReplay runs the extension's "Check the proxy": the same hello URL
// without a token, with a fresh one, and with that one again, each on a
// connection of its own; only the fresh token may pass.
func firefoxReplay(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	f, err := c.startFirefox(ctx, ffSettings{proxy: p, mode: "h3", pp: p.pp, poolSize: 2})
	if err != nil {
		return err
	}
	if _, err := f.waitTokens(ctx, "a token", func(t ffTokens) bool { return t.Pooled >= 1 }); err != nil {
		return err
	}
	r, err := f.check(ctx, c.url("https", c.env.origins.https, "hello"))
	if err != nil {
		return err
	}
	if !r.OK || r.NoToken != "refused" || r.Fresh != "admitted" || r.Replay != "refused" {
		return fmt.Errorf("the check found %+v, want no token refused, a fresh one admitted, a replayed one refused", r)
	}
	if saw := c.env.origins.saw(c.id); len(saw) != 1 {
		return fmt.Errorf("the origin saw %d requests, want 1 (the fresh token's)", len(saw))
	}
	if err := c.checkEgress(p, 1); err != nil {
		return err
	}
	return p.counted(ctx,
		[]string{"masqued_privacypass_redemptions_total", "result", "no_token"},
		[]string{"masqued_privacypass_redemptions_total", "result", "admitted"},
		[]string{"masqued_privacypass_redemptions_total", "result", "spent"})
}

// firefoxFallback black-holes UDP to the proxy: the extension's failover
// ProxyInfo (masqued's HTTPS front) must carry the page over HTTP/2.
func firefoxFallback(ctx context.Context, c *cellRun, _ *client, p *proxy) error {
	front, stop, err := c.blackholed(p)
	if err != nil {
		return err
	}
	defer stop()
	s := firefoxDefault(p)
	s.addr = front
	f, err := c.startFirefox(ctx, s)
	if err != nil {
		return err
	}
	return c.ffPage(ctx, f, p, c.env.origins.https, "https", 2, "h2", "tcp")
}
