// Package resolver resolves tunnel targets with a DNS server of the
// operator's choosing, over plain DNS, DNS over TLS (RFC 7858) or DNS over
// HTTPS (RFC 8484), and caches answers for their TTL, negative answers
// included (RFC 2308). The host's resolver may be one the operator does not
// control or trust with every target a user visits; this package lets the
// proxy choose. Its Resolver satisfies the tunnel core's Resolver seam; it is
// internal because it serves the daemon, not a public API. DNS messages are
// built and parsed by github.com/miekg/dns.
package resolver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Options tune a Resolver. The zero Options are the defaults documented on
// each field.
type Options struct {
	// TLSConfig verifies DoT and DoH servers; nil = the system roots.
	// ServerName defaults to the server's host.
	TLSConfig *tls.Config
	// Timeout bounds one query; 0 = 5 seconds.
	Timeout time.Duration
	// MaxEntries bounds the cache; 0 = 10000.
	MaxEntries int
	// MaxTTL caps how long an answer is cached; 0 = 1 hour.
	MaxTTL time.Duration
	// MaxNegativeTTL caps how long a name's absence is cached; 0 = 5 minutes.
	MaxNegativeTTL time.Duration
	// Now is the cache's clock; nil = time.Now.
	Now func() time.Time
	// Registerer gets masqued_dns_cache_total{result="hit"|"miss"}, one
	// count per question (a name's A and AAAA are two); nil = not counted.
	Registerer prometheus.Registerer
}

// Resolver looks names up at one DNS server and caches the answers. It is
// safe for concurrent use.
type Resolver struct {
	server   string // for errors
	ex       exchanger
	maxTTL   time.Duration
	maxNeg   time.Duration
	maxItems int
	now      func() time.Time

	mu       sync.Mutex
	cache    map[cacheKey]cacheEntry // guarded by mu
	inflight map[cacheKey]*query     // guarded by mu: questions being asked

	hits, misses prometheus.Counter // nil when not counted
}

// query is a question on its way to the server. Lookups of the same
// question wait for it rather than ask again.
type query struct {
	done      chan struct{} // closed when e and err are set
	e         cacheEntry
	err       error
	abandoned bool // the asker's context ended: waiters ask again themselves
}

type cacheKey struct {
	name  string // lower case, without the final dot
	qtype uint16
}

// cacheEntry is a positive answer (addrs, possibly none: NODATA) or an
// NXDOMAIN (notFound), valid until expires.
type cacheEntry struct {
	addrs    []netip.Addr
	notFound bool
	expires  time.Time
}

// exchanger sends one query and returns the answer.
type exchanger interface {
	exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
}

// New returns a Resolver for server, one of
//
//	udp://HOST[:53]              plain DNS over UDP, TCP when truncated
//	tcp://HOST[:53]              plain DNS over TCP
//	tls://HOST[:853]             DNS over TLS
//	https://HOST[:443]/PATH      DNS over HTTPS (POST)
//	HOST[:53], or a bare IPv6    the same as udp://
//
// HOST is best an IP address: a name would itself be resolved by the system
// resolver. For TLS its certificate must then hold the IP address, as
// 1.1.1.1's does.
func New(server string, o Options) (*Resolver, error) {
	if a, err := netip.ParseAddr(server); err == nil {
		server = "udp://" + net.JoinHostPort(a.String(), "53")
	} else if !strings.Contains(server, "://") {
		server = "udp://" + server
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("resolver %q is not a URL or host[:port]", server)
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	r := &Resolver{
		server:   u.Host,
		maxTTL:   o.MaxTTL,
		maxNeg:   o.MaxNegativeTTL,
		maxItems: o.MaxEntries,
		now:      o.Now,
		cache:    map[cacheKey]cacheEntry{},
		inflight: map[cacheKey]*query{},
	}
	if o.Registerer != nil {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_dns_cache_total", Help: "DNS questions about targets, by whether the cache answered.",
		}, []string{"result"})
		if err := o.Registerer.Register(vec); err != nil {
			return nil, err
		}
		r.hits, r.misses = vec.WithLabelValues("hit"), vec.WithLabelValues("miss")
	}
	if r.maxTTL == 0 {
		r.maxTTL = time.Hour
	}
	if r.maxNeg == 0 {
		r.maxNeg = 5 * time.Minute
	}
	if r.maxItems == 0 {
		r.maxItems = 10000
	}
	if r.now == nil {
		r.now = time.Now
	}
	tlsConf := &tls.Config{}
	if o.TLSConfig != nil {
		tlsConf = o.TLSConfig.Clone()
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = u.Hostname()
	}
	withPort := func(port string) string {
		if u.Port() != "" {
			return u.Host
		}
		return net.JoinHostPort(u.Hostname(), port)
	}
	switch u.Scheme {
	case "udp", "tcp":
		r.ex = &plainExchanger{addr: withPort("53"), net: u.Scheme, timeout: o.Timeout}
	case "tls":
		r.ex = &plainExchanger{addr: withPort("853"), net: "tcp-tls", timeout: o.Timeout, tls: tlsConf}
	case "https":
		r.ex = newDoH(u, tlsConf, o.Timeout)
	default:
		return nil, fmt.Errorf("resolver %q: scheme must be udp, tcp, tls or https", server)
	}
	if u.Scheme != "https" && (u.Path != "" && u.Path != "/" || u.RawQuery != "") {
		return nil, fmt.Errorf("resolver %q: only https takes a path", server)
	}
	return r, nil
}

// Close releases idle connections to the server.
func (r *Resolver) Close() error {
	if c, ok := r.ex.(interface{ close() }); ok {
		c.close()
	}
	return nil
}

// LookupNetIP returns the addresses of host: for network "ip" its AAAA and A
// records, queried in parallel, IPv6 first; for "ip6" or "ip4" one family.
// Errors are *net.DNSError: IsNotFound for NXDOMAIN, IsTimeout for a server
// that did not answer in time. A name with no address of the family is an
// empty result, not an error. The returned slice is the caller's.
func (r *Resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if strings.IndexByte(host, ':') >= 0 || strings.Trim(host, "0123456789.") == "" {
		if a, err := netip.ParseAddr(host); err == nil {
			return []netip.Addr{a}, nil
		}
	}
	// The cache key, and the question without its final dot.
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if _, ok := dns.IsDomainName(name); !ok || len(name) > 253 || name == "" {
		return nil, &net.DNSError{Err: "not a domain name", Name: host, IsNotFound: true}
	}
	switch network {
	case "ip6":
		return r.lookup(ctx, name, dns.TypeAAAA)
	case "ip4":
		return r.lookup(ctx, name, dns.TypeA)
	case "ip":
	default:
		return nil, &net.DNSError{Err: "unsupported network " + network, Name: host}
	}
	// Both from the cache, or whatever is missing asked in parallel.
	e6, ok6 := r.cached(name, dns.TypeAAAA)
	e4, ok4 := r.cached(name, dns.TypeA)
	if ok6 && ok4 {
		if r.hits != nil {
			r.hits.Add(2)
		}
		return both(e6, e4, name, r.server)
	}
	type answer struct {
		e   cacheEntry
		err error
	}
	a4 := make(chan answer, 1)
	go func() {
		e, err := r.entryFor(ctx, name, dns.TypeA)
		a4 <- answer{e, err}
	}()
	e6, err6 := r.entryFor(ctx, name, dns.TypeAAAA)
	a := <-a4
	e4, err4 := a.e, a.err
	switch {
	case err6 != nil && err4 != nil:
		return nil, err6
	case err6 != nil:
		return e4.result(name, r.server)
	case err4 != nil:
		return e6.result(name, r.server)
	}
	return both(e6, e4, name, r.server)
}

// both combines the answers for AAAA and A, IPv6 first. The name does not
// exist if either says so; a name whose one family is NODATA has the other.
func both(e6, e4 cacheEntry, name, server string) ([]netip.Addr, error) {
	if e6.notFound || e4.notFound {
		return (cacheEntry{notFound: true}).result(name, server)
	}
	if len(e6.addrs)+len(e4.addrs) == 0 {
		return nil, nil
	}
	out := make([]netip.Addr, 0, len(e6.addrs)+len(e4.addrs))
	return append(append(out, e6.addrs...), e4.addrs...), nil
}

// cached returns the unexpired cache entry for a question.
func (r *Resolver) cached(name string, qtype uint16) (cacheEntry, bool) {
	r.mu.Lock()
	e, ok := r.cache[cacheKey{name, qtype}]
	r.mu.Unlock()
	return e, ok && r.now().Before(e.expires)
}

// lookup answers one question from the cache or the server.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]netip.Addr, error) {
	e, err := r.entryFor(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	return e.result(name, r.server)
}

// entryFor returns the answer to one question, from the cache or the server;
// errors are failures to get an answer, not negative answers.
func (r *Resolver) entryFor(ctx context.Context, name string, qtype uint16) (cacheEntry, error) {
	key := cacheKey{name, qtype}
	for first := true; ; first = false {
		if e, ok := r.cached(name, qtype); ok {
			if first && r.hits != nil {
				r.hits.Inc()
			}
			return e, nil
		}
		if first && r.misses != nil {
			r.misses.Inc()
		}
		r.mu.Lock()
		q, asking := r.inflight[key]
		if !asking {
			q = &query{done: make(chan struct{})}
			r.inflight[key] = q
		}
		r.mu.Unlock()
		if !asking {
			q.e, q.err = r.ask(ctx, name, qtype)
			q.abandoned = ended(ctx)
			r.mu.Lock()
			delete(r.inflight, key)
			r.mu.Unlock()
			close(q.done)
			return q.e, q.err
		}
		select {
		case <-q.done:
			if !q.abandoned {
				return q.e, q.err
			}
		case <-ctx.Done():
			return cacheEntry{}, r.queryError(name, ctx.Err())
		}
	}
}

// ended reports whether ctx is done or past its deadline: a socket deadline
// taken from ctx can fire before ctx notices.
func ended(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(d)
}

// ask puts one question to the server and caches the answer.
func (r *Resolver) ask(ctx context.Context, name string, qtype uint16) (cacheEntry, error) {
	now := r.now()
	q := new(dns.Msg)
	q.SetQuestion(name+".", qtype)
	q.SetEdns0(1232, false) // the DNS Flag Day 2020 size: no IP fragmentation
	resp, err := r.ex.exchange(ctx, q)
	if err != nil {
		return cacheEntry{}, r.queryError(name, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, name+".") || resp.Question[0].Qtype != qtype {
		return cacheEntry{}, r.queryError(name, errors.New("answer does not match the question"))
	}
	e, ttl, err := r.entry(resp, name, qtype)
	if err != nil {
		return cacheEntry{}, err
	}
	if ttl > 0 {
		e.expires = now.Add(ttl)
		r.store(cacheKey{name, qtype}, e)
	}
	return e, nil
}

// result returns a copy of e's addresses, or its NXDOMAIN.
func (e cacheEntry) result(name, server string) ([]netip.Addr, error) {
	if e.notFound {
		return nil, &net.DNSError{Err: "no such host", Name: name, Server: server, IsNotFound: true}
	}
	if len(e.addrs) == 0 {
		return nil, nil
	}
	return append([]netip.Addr(nil), e.addrs...), nil
}

// rcodeError is the response code of an answer that is an error, such as
// REFUSED, for the rcode parameter of Proxy-Status (masque.StatusOf).
type rcodeError string

func (e rcodeError) Error() string    { return "DNS response code " + string(e) }
func (e rcodeError) DNSRcode() string { return string(e) }

// entry turns an answer into a cache entry and how long to keep it (0 = do
// not cache). Only NOERROR and NXDOMAIN are answers; other codes are errors.
func (r *Resolver) entry(m *dns.Msg, name string, qtype uint16) (cacheEntry, time.Duration, error) {
	var e cacheEntry
	switch m.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		e.notFound = true
		return e, r.negativeTTL(m), nil
	default:
		rcode := dns.RcodeToString[m.Rcode]
		if rcode == "" {
			rcode = fmt.Sprintf("RCODE%d", m.Rcode)
		}
		return e, 0, &net.DNSError{Err: "server answered " + rcode, UnwrapErr: rcodeError(rcode), Name: name, Server: r.server}
	}
	ttl := r.maxTTL
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
					e.addrs = append(e.addrs, a)
				}
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				if a, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok {
					e.addrs = append(e.addrs, a)
				}
			}
		}
		ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
	}
	if len(e.addrs) == 0 { // NODATA: a negative answer (RFC 2308 §2.2)
		ttl = r.negativeTTL(m)
	}
	return e, ttl, nil
}

// negativeTTL is how long a negative answer may be cached: the lesser of its
// SOA's TTL and MINIMUM (RFC 2308 §5), capped; 0 without an SOA, since such
// answers should not be cached (§5).
func (r *Resolver) negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, r.maxNeg)
		}
	}
	return 0
}

// store caches e, first making room when the cache is full: expired entries
// go, and arbitrary ones until a sixteenth of the room is free, so that the
// scan is not repeated on every insert.
func (r *Resolver) store(key cacheKey, e cacheEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= r.maxItems {
		now := r.now()
		for k, old := range r.cache {
			if !now.Before(old.expires) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) <= r.maxItems-max(1, r.maxItems/16) {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = e
}

// queryError turns a failed exchange into a *net.DNSError, a timeout where
// the server did not answer in time.
func (r *Resolver) queryError(name string, err error) error {
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	return &net.DNSError{Err: err.Error(), UnwrapErr: err, Name: name, Server: r.server, IsTimeout: timeout}
}

// plainExchanger speaks DNS over UDP, TCP or TLS.
type plainExchanger struct {
	addr, net string
	timeout   time.Duration
	tls       *tls.Config
}

func (p *plainExchanger) exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: p.net, Timeout: p.timeout, TLSConfig: p.tls}
	m, _, err := c.ExchangeContext(ctx, q, p.addr)
	if err == nil && m.Truncated && p.net == "udp" {
		c.Net = "tcp"
		m, _, err = c.ExchangeContext(ctx, q, p.addr)
	}
	if err == nil && m.Id != q.Id {
		err = errors.New("answer does not match the query")
	}
	return m, err
}
