package resolver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/miekg/dns"
)

// dohType is the media type of DNS messages over HTTPS (RFC 8484 §6).
const dohType = "application/dns-message"

// doh speaks DNS over HTTPS (RFC 8484) with POST, over one HTTP/2 client
// that keeps its connection to the server.
type doh struct {
	url    string
	client *http.Client
}

func newDoH(u *url.URL, tlsConf *tls.Config, timeout time.Duration) *doh {
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
	return &doh{url: u.String(), client: &http.Client{Transport: tr, Timeout: timeout}}
}

func (d *doh) close() { d.client.CloseIdleConnections() }

func (d *doh) exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	id := q.Id
	q.Id = 0 // RFC 8484 §4.1: 0 makes answers cache-friendly
	wire, err := q.Pack()
	q.Id = id
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(wire))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", dohType)
	req.Header.Set("Accept", dohType)
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("DoH server answered %s", resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != dohType {
		return nil, fmt.Errorf("DoH server answered %q, not %s", resp.Header.Get("Content-Type"), dohType)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, dns.MaxMsgSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > dns.MaxMsgSize {
		return nil, errors.New("DoH answer larger than a DNS message")
	}
	m := new(dns.Msg)
	if err := m.Unpack(body); err != nil {
		return nil, fmt.Errorf("DoH answer: %w", err)
	}
	m.Id = id
	return m, nil
}
