package vpn

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/auth"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/iptunnel/iptunneltest"
)

func TestMain(m *testing.M) { testnet.MainHTTP2(m) }

// startVPN runs Run in the client namespace until the test ends, and
// waits for its device to be up. The returned channel has Run's error.
func startVPN(t testing.TB, n *iptunneltest.Net, c Config) <-chan error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(n.CertPEM) {
		t.Fatal("bad certificate")
	}
	c.Proxy, c.TLSConfig = iptunneltest.ProxyURL(), &tls.Config{RootCAs: pool}
	up := make(chan struct{})
	var once sync.Once
	c.Logf = func(format string, a ...any) {
		t.Logf(format, a...)
		if strings.HasPrefix(format, "vpn: ") {
			once.Do(func() { close(up) })
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Client.Do(func() error { return Run(ctx, c) }) }()
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("vpn ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("vpn did not end")
		}
	})
	select {
	case <-up:
	case err := <-errc:
		t.Fatalf("vpn: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("vpn not up after 10s")
	}
	go func() { done <- <-errc }()
	return done
}

// TestDeviceWide routes everything through the tunnel, as the WARP client
// does: default routes in halves, the proxy pinned to its own route.
func TestDeviceWide(t *testing.T) {
	n := iptunneltest.New(t, iptunneltest.Options{AllowPrivate: true})
	o := n.StartOrigin(t, 4<<20)
	h3 := n.StartH3Origin(t, o.Data)
	startVPN(t, n, Config{Transport: "h3", Device: "mqvpn"})
	routes := n.Client.Run(t, "ip", "route", "show")
	for _, want := range []string{"0.0.0.0/1 dev mqvpn", "128.0.0.0/1 dev mqvpn", iptunneltest.ServerHopIP + " "} {
		if !strings.Contains(routes, want) {
			t.Errorf("client routes lack %q:\n%s", want, routes)
		}
	}
	t.Run("ping", func(t *testing.T) { n.Ping(t) })
	t.Run("tcp-download", func(t *testing.T) { n.CheckDownload(t, o) })
	t.Run("h3-download", func(t *testing.T) { n.CheckH3Download(t, h3) })
}

// TestHTTP2 carries the tunnel over HTTP/2, its packets in DATAGRAM
// capsules, with only the origin's network routed.
func TestHTTP2(t *testing.T) {
	n := iptunneltest.New(t, iptunneltest.Options{AllowPrivate: true, H2: true})
	o := n.StartOrigin(t, 4<<20)
	// The path as masque-client expands its -ip-template: * percent-encoded.
	startVPN(t, n, Config{Transport: "h2", Device: "mqvpn", Path: "/.well-known/masque/ip/%2A/%2A/",
		Routes: []netip.Prefix{netip.MustParsePrefix(iptunneltest.OriginNet)}})
	t.Run("ping", func(t *testing.T) { n.Ping(t) })
	t.Run("tcp-download", func(t *testing.T) { n.CheckDownload(t, o) })
}

// TestProxyLoss ends the proxy's side: Run returns, and the device and the
// routes are gone.
func TestProxyLoss(t *testing.T) {
	n := iptunneltest.New(t, iptunneltest.Options{AllowPrivate: true})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(n.CertPEM)
	ctx := iptunneltest.WaitContext(t)
	errc := make(chan error, 1)
	up := make(chan struct{})
	go func() {
		errc <- n.Client.Do(func() error {
			return Run(context.Background(), Config{Proxy: iptunneltest.ProxyURL(), TLSConfig: &tls.Config{RootCAs: pool},
				Transport: "h3", Device: "mqvpn", Logf: func(string, ...any) {
					select {
					case <-up:
					default:
						close(up)
					}
				}})
		})
	}()
	select {
	case <-up:
	case err := <-errc:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("vpn not up")
	}
	if err := n.IP.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v on proxy loss", err)
		}
	case <-ctx.Done():
		t.Fatal("Run still running after the proxy ended the tunnel")
	}
	if links := n.Client.Run(t, "ip", "link", "show"); strings.Contains(links, "mqvpn") {
		t.Fatalf("device left behind:\n%s", links)
	}
	if routes := n.Client.Run(t, "ip", "route", "show"); strings.Contains("\n"+routes, "\n"+iptunneltest.ServerHopIP+" ") {
		t.Fatalf("pinned route left behind:\n%s", routes)
	}
}

// bearer is a static Authorizer.
type bearer string

func (b bearer) Authorize(context.Context, []string) (string, error) {
	return "Bearer " + string(b), nil
}

// TestAuth runs the tunnel through a proxy that wants credentials: refused
// with 407 without them, carried with them, and counted as kind ip.
func TestAuth(t *testing.T) {
	const secret = "s3cret-for-the-test"
	creds := filepath.Join(t.TempDir(), "creds")
	sum := sha256.Sum256([]byte(secret))
	if err := os.WriteFile(creds, []byte("tester "+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewStatic(auth.StaticConfig{Scheme: auth.Bearer, File: creds})
	if err != nil {
		t.Fatal(err)
	}
	n := iptunneltest.New(t, iptunneltest.Options{AllowPrivate: true, Auth: a})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(n.CertPEM)
	err = n.Client.Do(func() error {
		tu, err := Dial(iptunneltest.WaitContext(t), Config{Proxy: iptunneltest.ProxyURL(), TLSConfig: &tls.Config{RootCAs: pool}, Transport: "h3"})
		if err == nil {
			tu.Close()
		}
		return err
	})
	var pe *proxyconn.ProxyError
	if !errors.As(err, &pe) || pe.StatusCode != 407 {
		t.Fatalf("without credentials: %v, want a 407", err)
	}
	o := n.StartOrigin(t, 1<<20)
	startVPN(t, n, Config{Transport: "h3", Device: "mqvpn", Authorizer: bearer(secret),
		Routes: []netip.Prefix{netip.MustParsePrefix(iptunneltest.OriginNet)}})
	n.CheckDownload(t, o)
	if got := n.Counter(t, "masqued_tunnels_total", "kind", "ip"); got != 1 {
		t.Errorf("masqued_tunnels_total{kind=ip} = %v, want 1", got)
	}
	if got := n.Counter(t, "masqued_auth_total", "result", "challenged"); got < 1 {
		t.Errorf("masqued_auth_total{result=challenged} = %v, want at least 1", got)
	}
}

// TestScoped asks for a tunnel scoped to the origin's address and TCP
// (RFC 9484 §4.6): the proxy advertises that one route, which is all the
// client routes, and the download goes through.
func TestScoped(t *testing.T) {
	n := iptunneltest.New(t, iptunneltest.Options{AllowPrivate: true})
	o := n.StartOrigin(t, 1<<20)
	startVPN(t, n, Config{Transport: "h3", Device: "mqvpn", Path: "/.well-known/masque/ip/" + iptunneltest.OriginIP + "/6/"})
	routes := n.Client.Run(t, "ip", "route", "show", "dev", "mqvpn")
	if strings.TrimSpace(routes) != iptunneltest.OriginIP+" scope link" {
		t.Fatalf("routes through the tunnel:\n%s\nwant only %s", routes, iptunneltest.OriginIP)
	}
	n.CheckDownload(t, o)
}
