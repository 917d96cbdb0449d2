package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

// hop is one proxy of a test chain: its URL and what its authenticator saw
// of each tunnel request (the target it asked for and its credential).
type hop struct {
	url   string
	mu    sync.Mutex
	saw   []string // "TARGET AUTHORIZATION"
	token string   // the Bearer credential it admits
}

func (h *hop) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.saw)
}

// startHop starts a proxy that admits only "Bearer token" (a 407 otherwise)
// and records each request; relayTo, when given, makes it an ingress relay
// to that egress, without -allow-private-targets.
func startHop(t *testing.T, token string, relayTo *hop) *hop {
	h := &hop{token: token}
	h.url = startProxy(t, true, func(c *tunnel.Config) {
		c.Auth = tunnel.AuthenticatorFunc(func(r *http.Request) error {
			// CONNECT names its target in the authority, CONNECT-UDP
			// in the path.
			h.mu.Lock()
			h.saw = append(h.saw, r.Host+r.URL.Path+" "+r.Header.Get("Proxy-Authorization"))
			h.mu.Unlock()
			if r.Header.Get("Proxy-Authorization") != "Bearer "+token {
				return testnet.ProxyAuthRequired()
			}
			return nil
		})
		if relayTo != nil {
			egress, err := masque.ParseAuthority(strings.TrimPrefix(relayTo.url, "https://"))
			if err != nil {
				t.Fatal(err)
			}
			c.Policy.RelayTo = []masque.Target{egress}
			c.Policy.AllowPrivate = false // a listed egress needs no opt-in
		}
	})
	return h
}

// bearer answers every request with its token.
type bearer string

func (b bearer) Authorize(context.Context, []string) (string, error) {
	return "Bearer " + string(b), nil
}

// chain dials relay, then egress through it, over transport, each with its
// own credential, and returns both connections.
func chain(t *testing.T, relay, egress *hop, transport Transport) (*Conn, *Conn) {
	t.Helper()
	tlsConf := testnet.NewCert(t).ClientTLS()
	first := dial(t, &Dialer{TLSConfig: tlsConf, QUICConfig: h3.RelayQUICConfig(), Transport: transport, Authorizer: bearer(relay.token)}, relay.url)
	second := dial(t, &Dialer{TLSConfig: tlsConf, Transport: transport, Authorizer: bearer(egress.token), Relay: first}, egress.url)
	if first.Transport() != transport || second.Transport() != transport {
		t.Fatalf("hops over %s and %s, want %s", first.Transport(), second.Transport(), transport)
	}
	return first, second
}

// body is the origin's download: 8 MB that no two offsets repeat within.
var body = func() []byte {
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}()

// TestChainHTTP3 is QUIC in QUIC in QUIC: HTTP/3 to an origin inside a
// CONNECT-UDP tunnel of the egress connection, which runs inside a
// CONNECT-UDP tunnel through the relay. The download arrives whole; the
// relay was asked for the egress alone, with its own token, and the egress
// for the origin, with its own.
func TestChainHTTP3(t *testing.T) {
	egress := startHop(t, "egress-token", nil)
	relay := startHop(t, "relay-token", egress)
	_, second := chain(t, relay, egress, HTTP3)
	origin := testnet.H3Origin(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))

	ctx := testnet.Context(t, 60*time.Second)
	pc, err := second.ListenUDP(ctx, origin.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	rt := proxyconn.NewOriginTransport(pc, testnet.NewCert(t).ClientTLS(), nil)
	defer rt.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://localhost:"+portOf(origin)+"/", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || sha256.Sum256(got) != sha256.Sum256(body) {
		t.Fatalf("downloaded %d of %d bytes, checksum differs or %v", len(got), len(body), err)
	}
	wantSplit(t, relay, egress, origin.String())
}

// TestChainTLSInTLS is the chain where UDP is blocked: HTTP/2 to the relay,
// HTTP/2 to the egress inside a CONNECT tunnel through it, and a TCP tunnel
// to the target on the egress connection; then a UDP tunnel on the same
// chain, in DATAGRAM capsules on both hops.
func TestChainTLSInTLS(t *testing.T) {
	egress := startHop(t, "egress-token", nil)
	relay := startHop(t, "relay-token", egress)
	_, second := chain(t, relay, egress, HTTP2)
	ctx := testnet.Context(t, 30*time.Second)

	echoAddr := testnet.TCPEcho(t, "127.0.0.1").String()
	conn, err := second.DialTCP(ctx, echoAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := bytes.Repeat([]byte("through two proxies "), 50000) // 1 MB
	go conn.Write(msg)
	got := make([]byte, len(msg))
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("TCP echo through the chain: %v", err)
	}
	wantSplit(t, relay, egress, echoAddr)

	udpAddr := testnet.UDPEcho(t, "127.0.0.1").String()
	pc, err := second.ListenUDP(ctx, udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	pc.WriteTo([]byte("ping"), nil)
	if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("UDP echo through the chain: %q, %v", buf[:n], err)
	}
}

// wantSplit checks what each hop was asked for: the relay only for the
// egress, every request with the relay's token; the egress only for target,
// with the egress's token. (Authorizers answer before any 407 here, so no
// request goes without a token.)
func wantSplit(t *testing.T, relay, egress *hop, target string) {
	t.Helper()
	egressAuthority := strings.TrimPrefix(egress.url, "https://")
	targetPath := strings.ReplaceAll(target, ":", "/")
	for _, r := range relay.requests() {
		if !strings.Contains(r, egressAuthority) && !strings.Contains(r, strings.ReplaceAll(egressAuthority, ":", "/")) ||
			strings.Contains(r, target) || strings.Contains(r, targetPath) || !strings.HasSuffix(r, " Bearer relay-token") {
			t.Errorf("the relay saw %q: want the egress %s with the relay's token, never the target", r, egressAuthority)
		}
	}
	for _, r := range egress.requests() {
		if !strings.Contains(r, target) && !strings.Contains(r, targetPath) || !strings.HasSuffix(r, " Bearer egress-token") {
			t.Errorf("the egress saw %q: want the target %s with the egress's token", r, target)
		}
	}
	if len(relay.requests()) == 0 || len(egress.requests()) == 0 {
		t.Errorf("relay saw %q, egress %q: each should have had a request", relay.requests(), egress.requests())
	}
}

// TestRelayRefusesOtherTargets: a relay tunnels to its egress only; any
// other target, on any transport and tunnel kind, gets 403
// destination_ip_prohibited, and a wrong hop's token is not admitted.
func TestRelayRefusesOtherTargets(t *testing.T) {
	egress := startHop(t, "egress-token", nil)
	relay := startHop(t, "relay-token", egress)
	tlsConf := testnet.NewCert(t).ClientTLS()
	ctx := testnet.Context(t, 10*time.Second)
	for _, tr := range []Transport{HTTP3, HTTP2} {
		c := dial(t, &Dialer{TLSConfig: tlsConf, Transport: tr, Authorizer: bearer(relay.token)}, relay.url)
		for _, target := range []string{testnet.TCPEcho(t, "127.0.0.1").String(), "1.1.1.1:443"} {
			_, err := c.DialTCP(ctx, target)
			wantRefusal(t, err, http.StatusForbidden, "destination_ip_prohibited")
			_, err = c.ListenUDP(ctx, target)
			wantRefusal(t, err, http.StatusForbidden, "destination_ip_prohibited")
		}
		// The egress's token does not open the relay.
		c = dial(t, &Dialer{TLSConfig: tlsConf, Transport: tr, Authorizer: bearer(egress.token)}, relay.url)
		_, err := c.ListenUDP(ctx, strings.TrimPrefix(egress.url, "https://"))
		wantRefusal(t, err, http.StatusProxyAuthRequired, "")
	}
}

func wantRefusal(t *testing.T, err error, status int, proxyStatus string) {
	t.Helper()
	var pe *proxyconn.ProxyError
	if !errors.As(err, &pe) || pe.StatusCode != status || !strings.Contains(pe.ProxyStatus, proxyStatus) {
		t.Fatalf("got %v, want a %d with Proxy-Status %q", err, status, proxyStatus)
	}
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}
