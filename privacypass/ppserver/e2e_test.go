package ppserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/privacypass"
	"github.com/masqued/masqued/tunnel"
)

// syncBuffer is a log sink for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testProxy is a real masqued HTTP/3 proxy on loopback whose tunnels need
// Privacy Pass tokens, logging everything at debug level to log.
type testProxy struct {
	url string
	log *syncBuffer
}

func startTestProxy(t *testing.T, keys KeySource, spent SpentStore, perConn bool) *testProxy {
	t.Helper()
	log := new(syncBuffer)
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rd, err := NewRedeemer(RedeemerConfig{IssuerName: "issuer.example", OriginInfo: "proxy.example", Keys: keys, Spent: spent, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	p := proxytest.StartH3(t, "127.0.0.1", true, func(c *tunnel.Config) {
		c.Auth, c.AuthPerConn, c.Logger = rd, perConn, logger
	})
	return &testProxy{url: p.URL, log: log}
}

// fixedAuthorizer presents one credential, before and after a 407.
type fixedAuthorizer string

func (f fixedAuthorizer) Authorize(context.Context, []string) (string, error) { return string(f), nil }

// onceAuthorizer presents its credential to the first request only.
type onceAuthorizer struct{ cred chan string }

func (o onceAuthorizer) Authorize(context.Context, []string) (string, error) {
	select {
	case c := <-o.cred:
		return c, nil
	default:
		return "", nil
	}
}

func dialProxy(t *testing.T, p *testProxy, a masque.Authorizer) *h3.Client {
	t.Helper()
	c, err := h3.Dial(testnet.Context(t, 30*time.Second), p.url, h3.Config{TLSConfig: testnet.NewCert(t).ClientTLS(), Authorizer: a})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpPing opens a CONNECT-UDP tunnel to echo and checks a round trip, or
// returns the error of opening it.
func udpPing(t *testing.T, c *h3.Client, echo *net.UDPAddr) error {
	t.Helper()
	u, err := c.ListenUDP(testnet.Context(t, 30*time.Second), echo.String())
	if err != nil {
		return err
	}
	defer u.Close()
	if _, err := u.WriteTo([]byte("ping"), nil); err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _, err := u.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo: %q, %v", buf[:n], err)
	}
	return nil
}

// want407 asserts err is the proxy's 407 with a parseable challenge.
func want407(t *testing.T, err error, what string) {
	t.Helper()
	var pe *proxyconn.ProxyError
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("%s: got %v, want 407", what, err)
	}
	if len(privacypass.ParseChallenges(pe.Challenges)) == 0 {
		t.Fatalf("%s: 407 without a usable challenge: %q", what, pe.Challenges)
	}
}

// TestEndToEnd: client → attester → issuer → token → CONNECT-UDP through
// the proxy, and the refusals around it.
func TestEndToEnd(t *testing.T) {
	ta := newTestAuthority(t, rate.Inf, 0)
	proxy := startTestProxy(t, ta.issuer, nil, false)
	echo := testnet.UDPEcho(t, "127.0.0.1")

	cl := newTestClient(t, ta, privacypass.ClientConfig{DirectoryURL: ta.directory})
	c := dialProxy(t, proxy, cl)
	for i := range 3 { // the first answers a 407, the others use the pool or mint again
		if err := udpPing(t, c, echo); err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
	}

	want407(t, udpPing(t, dialProxy(t, proxy, nil), echo), "no token")

	// Mint a token for the proxy's challenge, then spoil it in every way.
	var pe *proxyconn.ProxyError
	errors.As(udpPing(t, dialProxy(t, proxy, nil), echo), &pe)
	cred, err := cl.Authorize(context.Background(), pe.Challenges)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := privacypass.ParseCredentials(cred)
	other, err := privacypass.GenerateKey(privacypass.TypePublic, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Clone(tok)
	forged[len(forged)-1] ^= 1
	wrongType := bytes.Clone(tok)
	wrongType[1] = 1 // a type-2 token claiming type 1
	for name, spoilt := range map[string][]byte{
		"forged":     forged,
		"wrong key":  mint(t, other, testChallenge),
		"wrong type": wrongType,
		"truncated":  tok[:len(tok)-1],
	} {
		want407(t, udpPing(t, dialProxy(t, proxy, fixedAuthorizer(privacypass.FormatCredentials(spoilt))), echo), name)
	}
	if err := udpPing(t, dialProxy(t, proxy, fixedAuthorizer(cred)), echo); err != nil {
		t.Fatalf("the unspoilt token: %v", err)
	}
	want407(t, udpPing(t, dialProxy(t, proxy, fixedAuthorizer(cred)), echo), "replayed")

	// Privacy: the proxy's log holds no token; the issuer saw no account.
	if log := proxy.log.String(); strings.Contains(log, base64.URLEncoding.EncodeToString(tok)) ||
		strings.Contains(log, base64.RawURLEncoding.EncodeToString(tok[2:34])) || !strings.Contains(log, "token refused") {
		t.Errorf("proxy log:\n%s", log)
	}
	ta.checkPrivacy(t, -1)
}

// TestReplayAcrossProxies spends a token on one proxy and presents it to
// another sharing the Redis store.
func TestReplayAcrossProxies(t *testing.T) {
	r := startRedis(t)
	ks := testKeys()
	keys := StaticKeys{ks[1]}
	a := startTestProxy(t, keys, NewRedisStore(newRedisClient(t, r.addr), "pp:"), false)
	b := startTestProxy(t, keys, NewRedisStore(newRedisClient(t, r.addr), "pp:"), false)
	echo := testnet.UDPEcho(t, "127.0.0.1")
	cred := privacypass.FormatCredentials(mint(t, ks[1], testChallenge))
	if err := udpPing(t, dialProxy(t, a, fixedAuthorizer(cred)), echo); err != nil {
		t.Fatal(err)
	}
	want407(t, udpPing(t, dialProxy(t, b, fixedAuthorizer(cred)), echo), "replayed on the other proxy")
}

// TestTokenPerConnection: with AuthPerConn one token opens every tunnel of
// its connection, and a new connection needs a new token.
func TestTokenPerConnection(t *testing.T) {
	ks := testKeys()
	echo := testnet.UDPEcho(t, "127.0.0.1")
	for _, perConn := range []bool{false, true} {
		proxy := startTestProxy(t, StaticKeys{ks[1]}, nil, perConn)
		a := onceAuthorizer{cred: make(chan string, 1)}
		a.cred <- privacypass.FormatCredentials(mint(t, ks[1], testChallenge))
		c := dialProxy(t, proxy, a)
		if err := udpPing(t, c, echo); err != nil {
			t.Fatal(err)
		}
		err := udpPing(t, c, echo)
		if perConn && err != nil {
			t.Fatalf("second tunnel on the connection: %v", err)
		}
		if !perConn {
			want407(t, err, "second tunnel with one token per tunnel")
		}
		want407(t, udpPing(t, dialProxy(t, proxy, nil), echo), "another connection")
	}
}
