package interop

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
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
	p := proxytest.StartH3(t, testnet.IPv4, true)
	out := filepath.Join(t.TempDir(), "body")
	client := startProcess(t, 2*time.Minute, bin, "client",
		"-template", p.URL+"/.well-known/masque/udp/{target_host}/{target_port}/",
		"-ca", p.CertFile, "-o", out, "https://"+origin.String()+"/")
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
	got, _ := proxytest.FetchH3(t, proxyURL, h3.Config{
		TLSConfig: &tls.Config{RootCAs: pool},
		Template:  proxyURL + "/.well-known/masque/udp/{target_host}/{target_port}/",
	}, origin, "/")
	checkBody(t, got)
}

// TestOriginPMTUDThroughOurProxy fetches from an origin that probes the path
// MTU, as real ones do. Its largest probes do not fit into the tunnel's
// DATAGRAM frames (both QUIC connections have the same maximum packet size,
// and the tunnel's framing comes on top); masque-go would end the tunnel,
// ours drops them, counts them and lives: the whole body arrives, and the
// proxy has counted at least one too_large drop.
func TestOriginPMTUDThroughOurProxy(t *testing.T) {
	origin := startOrigin(t, true)
	p := proxytest.StartH3(t, testnet.IPv4, true)
	// A fetch is short on loopback, and the origin may send its first probe
	// only after it (about one fetch in fifteen on 2 cores): fetch again,
	// through a new tunnel, until the proxy has dropped a probe.
	var proxyDrops float64
	for fetch := 1; proxyDrops == 0 && fetch <= 5; fetch++ {
		got, clientDrops := proxytest.FetchH3(t, p.URL, h3.Config{TLSConfig: testnet.NewCert(t).ClientTLS()}, origin, "/")
		checkBody(t, got)
		proxyDrops = p.Metric(t, "masqued_datagrams_dropped_total", "reason", tunnel.DropTooLarge)
		t.Logf("fetch %d: datagrams dropped as too large: %v by the proxy in all, %d by the client", fetch, proxyDrops, clientDrops)
	}
	if proxyDrops == 0 {
		t.Error("the proxy dropped none of the origin's path-MTU probes as too large: the test no longer shows what it is for")
	}
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
