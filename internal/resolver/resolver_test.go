package resolver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/resolver"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// zone is an authoritative test zone that counts the questions it answers.
type zone struct {
	mu      sync.Mutex
	queries map[string]int // "name type", e.g. "both.test. AAAA"
}

func soa(ttl, minttl uint32) dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns.test.", Mbox: "root.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minttl}
}

func rr(t testing.TB, s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// answer answers q, or returns nil to stay silent.
func (z *zone) answer(t testing.TB, q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	name, qtype := q.Question[0].Name, q.Question[0].Qtype
	z.mu.Lock()
	z.queries[name+" "+dns.TypeToString[qtype]]++
	z.mu.Unlock()
	switch name {
	case "both.test.", "evil.test.":
		if qtype == dns.TypeA {
			m.Answer = append(m.Answer, rr(t, name+" 60 IN A 127.0.0.1"))
		} else {
			m.Answer = append(m.Answer, rr(t, name+" 60 IN AAAA ::1"))
		}
	case "short.test.": // A with a short TTL, no AAAA
		if qtype == dns.TypeA {
			m.Answer = append(m.Answer, rr(t, name+" 5 IN A 127.0.0.2"))
		} else {
			m.Ns = append(m.Ns, soa(60, 30))
		}
	case "alias.test.":
		m.Answer = append(m.Answer, rr(t, name+" 20 IN CNAME both.test."))
		if qtype == dns.TypeA {
			m.Answer = append(m.Answer, rr(t, "both.test. 60 IN A 127.0.0.1"))
		}
	case "fail.test.":
		m.Rcode = dns.RcodeServerFailure
	case "refused.test.":
		m.Rcode = dns.RcodeRefused
	case "silent.test.":
		return nil
	case "slow.test.": // answers, after a while
		time.Sleep(200 * time.Millisecond)
		m.Answer = append(m.Answer, rr(t, name+" 60 IN A 127.0.0.3"))
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa(60, 10))
	}
	return m
}

func (z *zone) count(q string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[q]
}

// server is a running test DNS server.
type server struct {
	url  string
	zone *zone
	tls  *tls.Config // to trust it
}

// startServer runs a DNS server speaking proto ("udp", "tcp", "tls" or
// "https") on loopback until the test ends.
func startServer(t testing.TB, proto string) *server {
	t.Helper()
	z := &zone{queries: map[string]int{}}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		if m := z.answer(t, q); m != nil {
			w.WriteMsg(m)
		}
	})
	cert := testnet.NewCert(t)
	s := &server{zone: z, tls: cert.ClientTLS()}
	var srv *dns.Server
	switch proto {
	case "udp":
		pc := testnet.UDP(t, "127.0.0.1")
		srv = &dns.Server{PacketConn: pc, Handler: handler}
		s.url = "udp://" + pc.LocalAddr().String()
	case "tcp":
		ln := testnet.TCP(t, "127.0.0.1")
		srv = &dns.Server{Listener: ln, Handler: handler}
		s.url = "tcp://" + ln.Addr().String()
	case "tls":
		ln := testnet.TCP(t, "127.0.0.1")
		srv = &dns.Server{Listener: tls.NewListener(ln, cert.ServerTLS()), Net: "tcp-tls", Handler: handler}
		s.url = "tls://" + ln.Addr().String()
	case "https":
		hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			q := new(dns.Msg)
			if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/dns-message" || q.Unpack(body) != nil {
				http.Error(w, "bad DoH request", http.StatusBadRequest)
				return
			}
			m := z.answer(t, q)
			if m == nil {
				<-r.Context().Done()
				return
			}
			wire, _ := m.Pack()
			w.Header().Set("Content-Type", "application/dns-message")
			w.Write(wire)
		}))
		hs.EnableHTTP2 = true
		hs.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short at Close
		hs.TLS = cert.ServerTLS()
		hs.StartTLS()
		t.Cleanup(hs.Close)
		s.url = hs.URL + "/dns-query"
		return s
	}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() {
		done <- srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return s
}

// clock is a settable time for cache expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newResolver(t testing.TB, s *server, o resolver.Options) (*resolver.Resolver, *clock) {
	t.Helper()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	if o.Now == nil {
		o.Now = clk.Now
	}
	o.TLSConfig = s.tls
	r, err := resolver.New(s.url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, clk
}

var addrs = func(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestLookupAndCache(t *testing.T) {
	for _, proto := range []string{"udp", "tcp", "tls", "https"} {
		t.Run(proto, func(t *testing.T) {
			s := startServer(t, proto)
			r, clk := newResolver(t, s, resolver.Options{})
			ctx := testnet.Context(t, 10*time.Second)
			got, err := r.LookupNetIP(ctx, "ip", "Both.TEST")
			if err != nil {
				t.Fatal(err)
			}
			if want := addrs("::1", "127.0.0.1"); !slices.Equal(got, want) {
				t.Fatalf("both.test: %v, want %v", got, want)
			}
			got[0] = netip.Addr{} // the caller's slice: the cache must not see this
			clk.advance(59 * time.Second)
			again, err := r.LookupNetIP(ctx, "ip", "both.test")
			if err != nil || !slices.Equal(again, addrs("::1", "127.0.0.1")) {
				t.Fatalf("cached both.test: %v, %v", again, err)
			}
			if n := s.zone.count("both.test. A") + s.zone.count("both.test. AAAA"); n != 2 {
				t.Errorf("%d questions for two lookups within the TTL, want 2", n)
			}
			clk.advance(time.Second) // the TTL of 60 s has run out
			if _, err := r.LookupNetIP(ctx, "ip", "both.test"); err != nil {
				t.Fatal(err)
			}
			if n := s.zone.count("both.test. A"); n != 2 {
				t.Errorf("A asked %d times after the TTL ran out, want 2", n)
			}
		})
	}
}

func TestLookupShapes(t *testing.T) {
	s := startServer(t, "udp")
	r, clk := newResolver(t, s, resolver.Options{})
	ctx := testnet.Context(t, 10*time.Second)
	for _, tc := range []struct {
		network, host string
		want          []netip.Addr
	}{
		{"ip", "short.test", addrs("127.0.0.2")},
		{"ip6", "short.test", nil},
		{"ip4", "both.test", addrs("127.0.0.1")},
		{"ip", "alias.test", addrs("127.0.0.1")}, // the CNAME, then its A
		{"ip", "192.0.2.1", addrs("192.0.2.1")},
	} {
		got, err := r.LookupNetIP(ctx, tc.network, tc.host)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("LookupNetIP(%s, %s) = %v, %v; want %v", tc.network, tc.host, got, err, tc.want)
		}
	}
	// NODATA is cached for the SOA's minimum (30 s), the A for its 5 s TTL.
	clk.advance(6 * time.Second)
	r.LookupNetIP(ctx, "ip", "short.test")
	if a, aaaa := s.zone.count("short.test. A"), s.zone.count("short.test. AAAA"); a != 2 || aaaa != 1 {
		t.Errorf("after 6 s: A asked %d times (want 2), AAAA %d (want 1)", a, aaaa)
	}
}

func TestLookupErrors(t *testing.T) {
	s := startServer(t, "udp")
	r, clk := newResolver(t, s, resolver.Options{Timeout: 300 * time.Millisecond})
	ctx := testnet.Context(t, 10*time.Second)
	for _, tc := range []struct {
		host, kind, rcode string
		status            int
	}{
		{"missing.test", masque.StatusDNSError, "NXDOMAIN", http.StatusBadGateway},
		{"fail.test", masque.StatusDNSError, "SERVFAIL", http.StatusBadGateway},
		{"refused.test", masque.StatusDNSError, "REFUSED", http.StatusBadGateway},
		{"silent.test", masque.StatusDNSTimeout, "", http.StatusGatewayTimeout},
		{"not..a.name", masque.StatusDNSError, "NXDOMAIN", http.StatusBadGateway},
	} {
		_, err := r.LookupNetIP(ctx, "ip", tc.host)
		var de *net.DNSError
		if !errors.As(err, &de) {
			t.Errorf("%s: error %v is not a *net.DNSError", tc.host, err)
			continue
		}
		status, e := masque.StatusOf(err)
		if status != tc.status || e.Kind != tc.kind || tc.rcode != "" && e.Rcode != tc.rcode {
			t.Errorf("%s: %d %s rcode %q, want %d %s %q (%v)", tc.host, status, e.Kind, e.Rcode, tc.status, tc.kind, tc.rcode, err)
		}
	}
	if !strings.Contains(errString(r.LookupNetIP(ctx, "ip", "refused.test")), "REFUSED") {
		t.Error("a REFUSED answer does not say so")
	}
	// NXDOMAIN is cached for the SOA's minimum (10 s); failures are not.
	r.LookupNetIP(ctx, "ip", "missing.test")
	r.LookupNetIP(ctx, "ip", "fail.test")
	if n := s.zone.count("missing.test. A"); n != 1 {
		t.Errorf("NXDOMAIN asked %d times within its negative TTL, want 1", n)
	}
	if n := s.zone.count("fail.test. A"); n != 2 {
		t.Errorf("SERVFAIL asked %d times, want every time (2)", n)
	}
	clk.advance(10 * time.Second)
	r.LookupNetIP(ctx, "ip", "missing.test")
	if n := s.zone.count("missing.test. A"); n != 2 {
		t.Errorf("NXDOMAIN asked %d times after its negative TTL, want 2", n)
	}
}

func errString(_ []netip.Addr, err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestNew(t *testing.T) {
	for _, bad := range []string{"ftp://1.1.1.1", "udp://", "udp://1.1.1.1/path", "://x", "tls://1.1.1.1?x=1"} {
		if _, err := resolver.New(bad, resolver.Options{}); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		}
	}
	for _, good := range []string{"1.1.1.1", "1.1.1.1:53", "[2606:4700:4700::1111]:53", "2606:4700:4700::1111", "tls://1.1.1.1", "https://1.1.1.1/dns-query"} {
		r, err := resolver.New(good, resolver.Options{})
		if err != nil {
			t.Errorf("New(%q): %v", good, err)
			continue
		}
		r.Close()
	}
}

// TestNoRebinding checks that a name is held to the policy like its address:
// a name that resolves to loopback is refused without the opt-in.
func TestNoRebinding(t *testing.T) {
	for _, proto := range []string{"udp", "https"} {
		t.Run(proto, func(t *testing.T) {
			s := startServer(t, proto)
			r, _ := newResolver(t, s, resolver.Options{})
			origin := testnet.TCPEcho(t, "127.0.0.1")
			for _, allow := range []bool{false, true} {
				p, err := tunnel.New(tunnel.Config{Resolver: r, Policy: tunnel.Policy{AllowPrivate: allow}})
				if err != nil {
					t.Fatal(err)
				}
				f := p.Front("test")
				req := httptest.NewRequest(http.MethodConnect, "/", nil)
				req.Host = net.JoinHostPort("evil.test", strconv.Itoa(origin.Port))
				kind, target, err := f.ParseRequest(req, "")
				if err != nil {
					t.Fatal(err)
				}
				tun, err := f.Open(testnet.Context(t, 10*time.Second), req, kind, target, nil)
				if !allow {
					status, e := masque.StatusOf(err)
					if status != http.StatusForbidden || e.Kind != masque.StatusIPProhibited {
						t.Errorf("evil.test → 127.0.0.1 without the opt-in: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("with the opt-in: %v", err)
				}
				tun.Close()
			}
		})
	}
}

// BenchmarkLookupCached is the cost of a cache hit, for one family and for
// both (as the core asks).
func BenchmarkLookupCached(b *testing.B) {
	s := startServer(b, "udp")
	r, _ := newResolver(b, s, resolver.Options{})
	ctx := context.Background()
	for _, network := range []string{"ip4", "ip"} {
		b.Run(network, func(b *testing.B) {
			if _, err := r.LookupNetIP(ctx, network, "both.test"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.LookupNetIP(ctx, network, "both.test"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCacheBound: a full cache makes room and keeps what it just learnt.
func TestCacheBound(t *testing.T) {
	s := startServer(t, "udp")
	r, _ := newResolver(t, s, resolver.Options{MaxEntries: 3})
	ctx := testnet.Context(t, 10*time.Second)
	for i := range 10 {
		r.LookupNetIP(ctx, "ip4", "n"+strconv.Itoa(i)+".test")
	}
	r.LookupNetIP(ctx, "ip4", "n9.test")
	if n := s.zone.count("n9.test. A"); n != 1 {
		t.Errorf("the newest entry was asked %d times, want 1 (cached)", n)
	}
	// At most 3 of the 10 can still be cached: at least 7 are asked again.
	again := 0
	for i := range 10 {
		name := "n" + strconv.Itoa(i) + ".test"
		r.LookupNetIP(ctx, "ip4", name)
		if s.zone.count(name+". A") == 2 {
			again++
		}
	}
	if again < 7 {
		t.Errorf("%d of 10 names asked again from a cache of 3, want at least 7", again)
	}
}

// TestConcurrentLookupsAskOnce: lookups of a name that is being asked wait
// for that answer instead of asking again, and one whose context ends
// leaves without taking the others' answer with it.
func TestConcurrentLookupsAskOnce(t *testing.T) {
	s := startServer(t, "udp")
	r, _ := newResolver(t, s, resolver.Options{})
	ctx := testnet.Context(t, 10*time.Second)
	// The first asker gives up at once; the others still get the answer.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	errs := make(chan error, 11)
	go func() {
		_, err := r.LookupNetIP(short, "ip4", "slow.test")
		errs <- err
	}()
	time.Sleep(10 * time.Millisecond)
	for range 10 {
		go func() {
			got, err := r.LookupNetIP(ctx, "ip4", "slow.test")
			if err == nil && !slices.Equal(got, addrs("127.0.0.3")) {
				err = errors.New("wrong answer")
			}
			errs <- err
		}()
	}
	var failed int
	for range 11 {
		if err := <-errs; err != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d of 11 lookups failed, want only the one that gave up", failed)
	}
	if n := s.zone.count("slow.test. A"); n > 2 {
		t.Errorf("11 concurrent lookups asked %d times, want 1 (or 2: once after the first gave up)", n)
	}
}

// TestCacheCounted: each question counts once, as a hit or a miss.
func TestCacheCounted(t *testing.T) {
	s := startServer(t, "udp")
	reg := prometheus.NewPedanticRegistry()
	r, _ := newResolver(t, s, resolver.Options{Registerer: reg})
	ctx := testnet.Context(t, 10*time.Second)
	for range 2 {
		if _, err := r.LookupNetIP(ctx, "ip", "both.test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.LookupNetIP(ctx, "ip4", "both.test"); err != nil {
		t.Fatal(err)
	}
	for result, want := range map[string]float64{"miss": 2, "hit": 3} {
		if got := testnet.Metric(t, reg, "masqued_dns_cache_total", "result", result); got != want {
			t.Errorf("%s: %v, want %v", result, got, want)
		}
	}
}
