package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/privacypass"
)

// hop is one proxy of -proxy's chain (one proxy, or an ingress relay and
// the egress proxy behind it) with what is its alone: trust and Privacy Pass.
type hop struct {
	url                                    string
	ca, accountKey, attester, issuerDirect string // this hop's entries of the list flags
	tls                                    *tls.Config
	authorizer                             masque.Authorizer // nil: no credentials
	tokens                                 *privacypass.Client
}

// parseHops splits -proxy at its commas into hops, and gives each its entry
// of -ca, -account-key, -attester and -issuer-directory: a flag with one
// entry is every hop's, one with an entry per hop gives each its own (an
// empty entry, as in -account-key ,egress.key, is none for that hop).
func (o *options) parseHops(fs *flag.FlagSet) error {
	urls := strings.Split(o.proxy, ",")
	if o.proxy == "" {
		return nil
	}
	lists := map[string]*string{"ca": &o.ca, "account-key": &o.accountKey, "attester": &o.attester, "issuer-directory": &o.issuerDirectory}
	entries := map[string][]string{}
	for name, v := range lists {
		e := strings.Split(*v, ",")
		if len(e) != 1 && len(e) != len(urls) {
			return cli.Usagef(fs, "-%s has %d entries for the %d proxies of -proxy: give one for all, or one per proxy", name, len(e), len(urls))
		}
		entries[name] = e
	}
	entry := func(name string, i int) string {
		e := entries[name]
		return strings.TrimSpace(e[min(i, len(e)-1)])
	}
	o.hops = nil
	for i, u := range urls {
		u = strings.TrimSpace(u)
		if _, err := proxyconn.Authority(u); err != nil {
			return cli.Usagef(fs, "-proxy wants a URL such as https://127.0.0.1:4433 (or a comma-separated relay and egress proxy), not %q", u)
		}
		h := hop{url: u, ca: entry("ca", i), accountKey: entry("account-key", i), attester: entry("attester", i), issuerDirect: entry("issuer-directory", i)}
		if (h.accountKey == "") != (h.attester == "") {
			return cli.Usagef(fs, "-account-key and -attester go together (for %s)", u)
		}
		o.hops = append(o.hops, h)
	}
	if len(o.hops) > 2 {
		return cli.Usagef(fs, "-proxy: a chain is a relay and an egress proxy, not %d proxies", len(o.hops))
	}
	return nil
}

// prepareHops loads each hop's trust and starts its token pool, trusted as
// the hop is. Close the pools with closeHops.
func (o *options) prepareHops() error {
	for i := range o.hops {
		h := &o.hops[i]
		h.tls = &tls.Config{}
		if h.ca != "" {
			var err error
			if h.tls.RootCAs, err = loadPool(h.ca, x509.NewCertPool()); err != nil {
				return cli.FlagErrorf("ca", "%w", err)
			}
		}
		if h.accountKey == "" {
			continue
		}
		tr := &http.Transport{TLSClientConfig: h.tls.Clone()} // the attester and the directory are trusted as the hop is
		tokens, err := o.tokens(h, &http.Client{Transport: tr, Timeout: o.timeout})
		if err != nil {
			return err
		}
		h.tokens, h.authorizer = tokens, tokens
	}
	return nil
}

func (o *options) closeHops() {
	for _, h := range o.hops {
		if h.tokens != nil {
			h.tokens.Close()
		}
	}
}

// tokens returns the Privacy Pass token pool of h's -account-key, reaching
// the attester with hc. serve, which opens many tunnels, starts minting at
// once for the challenge masqued sends (issuer: the directory's host;
// origin: the hop's host:port); fetch mints one token, on the hop's 407.
func (o *options) tokens(h *hop, hc *http.Client) (*privacypass.Client, error) {
	key, err := privacypass.ReadAPIKey(h.accountKey)
	if err != nil {
		return nil, fmt.Errorf("-account-key: %w", err)
	}
	c := privacypass.ClientConfig{AttesterURL: h.attester, DirectoryURL: h.issuerDirect, APIKey: key, HTTPClient: hc}
	dir, err := url.Parse(h.issuerDirect)
	proxy, perr := url.Parse(h.url)
	if o.serve && h.issuerDirect != "" && err == nil && perr == nil {
		c.Prefetch = &privacypass.TokenChallenge{Type: privacypass.TypePublic, IssuerName: dir.Host, OriginInfo: proxy.Host}
	} else {
		c.PoolSize = -1 // one tunnel: mint on the 407, nothing ahead
	}
	return privacypass.NewClient(c)
}

// dialer is the connection to hop i that the options describe. Every hop has
// its own trust and credentials; the location hint goes to the last alone,
// the proxy that picks the egress address; the hops before it carry the
// next hop's connection in their datagrams, so start at larger packets.
func (o *options) dialer(i int) *client.Dialer {
	h := o.hops[i]
	d := &client.Dialer{
		TLSConfig:        h.tls,
		Template:         o.template,
		DisableDatagrams: o.disableDatagrams,
		Forwarding:       o.forward,
		Transport:        o.transport,
		Authorizer:       h.authorizer,
	}
	if i == len(o.hops)-1 {
		d.Header = o.header()
	} else {
		d.QUICConfig = h3.RelayQUICConfig()
	}
	return d
}

// connect opens a session to every hop, each through the one before, and
// returns the last one's, whose connections tunnels are opened on, and a
// function that closes them all. logf, if not nil, reports each hop.
func (o *options) connect(ctx context.Context, logf func(string, ...any)) (*client.Session, func() error, error) {
	var sessions []*client.Session
	closeAll := func() error {
		var errs []error
		for i := len(sessions) - 1; i >= 0; i-- {
			errs = append(errs, sessions[i].Close())
		}
		return errors.Join(errs...)
	}
	var relay client.Relay
	for i, h := range o.hops {
		start := time.Now()
		d := o.dialer(i)
		d.Relay = relay
		s, err := client.NewSession(ctx, d, h.url)
		if err != nil {
			closeAll()
			if len(o.hops) > 1 {
				err = fmt.Errorf("%s %s: %w", o.hopRole(i), h.url, err)
			}
			return nil, nil, err
		}
		sessions = append(sessions, s)
		relay = s
		if logf != nil {
			c := s.Conn()
			through := ""
			if i > 0 {
				through = " through the relay"
			}
			logf("connected to %s %s over %s%s in %s", o.hopRole(i), h.url, c.Transport(), through, since(start))
			if why := c.FallbackReason(); why != nil {
				logf("not over HTTP/3: %v", why)
			}
		}
	}
	return sessions[len(sessions)-1], closeAll, nil
}

// hopRole names hop i for messages: the proxy, or in a chain the relay and
// the egress proxy.
func (o *options) hopRole(i int) string {
	switch {
	case len(o.hops) == 1:
		return "proxy"
	case i == 0:
		return "relay"
	}
	return "egress proxy"
}
