package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/internal/tunnel"
)

// body is what the origins serve: 5 MB that no shifted or repeated copy of
// a part of it matches.
var body = func() []byte {
	b := make([]byte, 5_000_000)
	rand.NewChaCha8([32]byte{}).Read(b)
	return b
}()

// The masque-go client and its proxy: our proxy against its client, its
// proxy against our client.

func TestMasqueGoClientThroughOurProxy(t *testing.T) {
	bin := masquegoBinary(t)
	origin := startOrigin(t, false)
	p := startOurProxy(t)
	out := filepath.Join(t.TempDir(), "body")
	client := startProcess(t, 2*time.Minute, bin, "client",
		"-template", p.url+"/.well-known/masque/udp/{target_host}/{target_port}/",
		"-ca", p.certFile, "-o", out, "https://"+origin.String()+"/")
	wait(t, client)
	checkStats(t, client.Stderr())
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	checkBody(t, got)
}

func TestOurClientThroughMasqueGoProxy(t *testing.T) {
	bin := masquegoBinary(t)
	origin := startOrigin(t, false)
	certFile := filepath.Join(t.TempDir(), "proxy.pem")
	proxy := startProcess(t, 2*time.Minute, bin, "proxy", "-listen", "127.0.0.1:0", "-cert-out", certFile)
	addr := line(t, proxy, "listening on ")
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", certFile)
	}
	proxyURL := "https://" + addr
	got, _ := fetchThrough(t, proxyURL, h3proxy.ClientConfig{
		TLSConfig: &tls.Config{RootCAs: pool},
		Template:  proxyURL + "/.well-known/masque/udp/{target_host}/{target_port}/",
	}, origin)
	checkBody(t, got)
}

// TestOriginPMTUDThroughOurProxy fetches from an origin that probes the path
// MTU, as real ones do. Its probes do not fit into the tunnel's DATAGRAM
// frames; masque-go would end the tunnel, ours drops them and lives.
func TestOriginPMTUDThroughOurProxy(t *testing.T) {
	origin := startOrigin(t, true)
	p := startOurProxy(t)
	got, clientDrops := fetchThrough(t, p.url, h3proxy.ClientConfig{TLSConfig: testnet.NewCert(t).ClientTLS()}, origin)
	checkBody(t, got)
	t.Logf("datagrams dropped as too large: %v by the proxy, %d by the client", p.tooLarge(t), clientDrops)
}

// startOrigin serves body over HTTP/3 on 127.0.0.1. Unless pmtud is set, the
// origin does not probe the path MTU: masque-go's proxy closes a whole tunnel
// when one datagram from the target does not fit the client connection, and
// PMTU probes are exactly such datagrams.
func startOrigin(t *testing.T, pmtud bool) *net.UDPAddr {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })
	return testnet.H3OriginWith(t, testnet.IPv4, h, &quic.Config{DisablePathMTUDiscovery: !pmtud})
}

// ourProxy is an in-process h3proxy.Server on 127.0.0.1 that may reach
// loopback targets.
type ourProxy struct {
	url      string // https://127.0.0.1:PORT
	certFile string // its certificate, PEM
	reg      *prometheus.Registry
}

func startOurProxy(t *testing.T) *ourProxy {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := tunnel.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	pc := testnet.UDP(t, testnet.IPv4)
	addr := pc.LocalAddr().(*net.UDPAddr)
	proxy, err := tunnel.New(tunnel.Config{
		Policy:  tunnel.Policy{AllowPrivate: true, SelfPorts: []netip.AddrPort{addr.AddrPort()}},
		Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	cert := testnet.NewCert(t)
	certFile := filepath.Join(t.TempDir(), "proxy.pem")
	if err := os.WriteFile(certFile, cert.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := &h3proxy.Server{Proxy: proxy, TLSConfig: cert.ServerTLS()}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(pc) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("proxy: %v", err)
		}
	})
	return &ourProxy{url: "https://" + addr.String(), certFile: certFile, reg: reg}
}

// tooLarge returns the proxy's count of datagrams dropped as too large.
func (p *ourProxy) tooLarge(t *testing.T) float64 {
	t.Helper()
	families, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "masqued_datagrams_dropped_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == tunnel.DropTooLarge {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("no too_large drop counter")
	return 0
}

// fetchThrough GETs the origin's body with HTTP/3 inside a CONNECT-UDP
// tunnel opened by our client at proxyURL. It returns the body and the
// number of packets the client dropped as too large for the tunnel.
func fetchThrough(t *testing.T, proxyURL string, cfg h3proxy.ClientConfig, origin *net.UDPAddr) ([]byte, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := h3proxy.Dial(ctx, proxyURL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := c.ListenUDP(ctx, origin.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	h3 := u.HTTP3(testnet.NewCert(t).ClientTLS(), nil)
	defer h3.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+origin.String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: h3}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body after %d bytes: %v", len(got), err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	return got, u.Dropped()
}

func checkBody(t *testing.T, got []byte) {
	t.Helper()
	if !bytes.Equal(got, body) {
		t.Fatalf("body: got %d bytes, want the origin's %d", len(got), len(body))
	}
}

// statsLine is what the masque-go client prints on stderr per fetch.
var statsLine = regexp.MustCompile(`(?m)^bytes=(\d+) seconds=[0-9.]+ mbit_per_s=[0-9.]+ status=(\d+)$`)

func checkStats(t *testing.T, stderr string) {
	t.Helper()
	m := statsLine.FindAllStringSubmatch(stderr, -1)
	if len(m) != 1 || m[0][1] != fmt.Sprint(len(body)) || m[0][2] != "200" {
		t.Fatalf("masque-go client stats: %q, want one line with bytes=%d status=200", m, len(body))
	}
}
