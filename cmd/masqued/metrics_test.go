package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/promscrape"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
)

// scrape reads /metrics from the admin listener and parses it as
// Prometheus scrapes it.
func scrape(t *testing.T, admin string) prometheus.Gatherer {
	t.Helper()
	mfs, err := promscrape.Scrape(context.Background(), "http://"+admin+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
}

var hostPort = regexp.MustCompile(`^\[?[0-9a-fA-F:.]+\]?(:\d+)?$`)

// checkNoAddresses fails if any label value looks like an IP address or
// host:port.
func checkNoAddresses(t *testing.T, g prometheus.Gatherer, addrs ...string) {
	t.Helper()
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				v := lp.GetValue()
				_, ipErr := netip.ParseAddr(v)
				_, apErr := netip.ParseAddrPort(v)
				if ipErr == nil || apErr == nil || (strings.ContainsAny(v, ".:") && hostPort.MatchString(v)) {
					t.Errorf("%s{%s=%q}: a label holds an address", name, lp.GetName(), v)
				}
				for _, a := range addrs {
					if strings.Contains(v, a) {
						t.Errorf("%s{%s=%q}: a label holds %s", name, lp.GetName(), v, a)
					}
				}
			}
		}
	}
}

// bearer answers every tunnel request with one token.
type bearer string

func (b bearer) Authorize(context.Context, []string) (string, error) {
	return "Bearer " + string(b), nil
}

var _ masque.Authorizer = bearer("")

// TestMetrics runs tunnels of each kind over both fronts through masqued
// with bearer auth, and checks, on /metrics parsed as Prometheus would, that
// the counters moved by exactly what was sent, and that no label holds an
// address. The admin listener also answers /healthz, /readyz and pprof.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_STATE_HOME", dir)
	sum := sha256.Sum256([]byte("metrics-secret"))
	creds := filepath.Join(dir, "creds")
	if err := os.WriteFile(creds, []byte("tester "+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, "-listen", "127.0.0.1:0", "-allow-private-targets", "-admin-listen", "127.0.0.1:0",
		"-auth", "bearer", "-auth-credentials", creds)
	admin := d.line(t, "admin on ")
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/debug/pprof/": 200, "/nothing": 404} {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %s, want %d", path, resp.Status, want)
		}
	}
	echo := testnet.TCPEcho(t, testnet.IPv4)
	udpEcho := testnet.UDPEcho(t, testnet.IPv4)
	l := testnet.TCP(t, testnet.IPv4)
	closed := l.Addr().String()
	l.Close()
	before := scrape(t, admin)

	ctx := testnet.Context(t, 30*time.Second)
	tlsConf := trust(t, d.certPath)
	c3, err := h3.Dial(ctx, "https://"+d.addr, h3.Config{TLSConfig: tlsConf, Authorizer: bearer("metrics-secret")})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c2, err := h2.Dial(ctx, "https://"+d.addr, h2.Config{TLSConfig: tlsConf, Authorizer: bearer("metrics-secret")})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	const tcpBytes = 10000
	payload := make([]byte, tcpBytes)
	for i := range 5 {
		dial, target := c3.DialTCP, echo.String()
		switch i {
		case 3:
			dial = c2.DialTCP
		case 4: // a name to resolve
			target = net.JoinHostPort("localhost", strconv.Itoa(echo.Port))
		}
		c, err := dial(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, tcpBytes)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	const datagrams, size = 5, 300
	for range 2 {
		u, err := c3.ListenUDP(ctx, udpEcho.String())
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2000)
		for range datagrams {
			if _, err := u.WriteTo(make([]byte, size), nil); err != nil {
				t.Fatal(err)
			}
			u.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _, err := u.ReadFrom(buf); err != nil || n != size {
				t.Fatalf("echo: %d bytes, %v", n, err)
			}
		}
		u.Close()
	}
	_, err = c3.DialTCP(ctx, closed)
	var pe *proxyconn.ProxyError
	if !errors.As(err, &pe) {
		t.Fatalf("tunnel to a closed port: %v", err)
	}
	noAuth, err := h3.Dial(ctx, "https://"+d.addr, h3.Config{TLSConfig: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	defer noAuth.Close()
	if _, err := noAuth.DialTCP(ctx, echo.String()); !errors.As(err, &pe) || pe.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("without credentials: %v", err)
	}

	// The relays count after the client has its bytes: wait for the last
	// tunnel to be closed.
	var after prometheus.Gatherer
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = scrape(t, admin)
		if testnet.Metric(t, after, "masqued_tunnels_active") == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"masqued_tunnels_total", []string{"front", "h3", "kind", "tcp"}, 4},
		{"masqued_tunnels_total", []string{"front", "h2", "kind", "tcp"}, 1},
		{"masqued_tunnels_total", []string{"front", "h3", "kind", "udp"}, 2},
		{"masqued_tunnels_active", nil, 0},
		{"masqued_tunnel_bytes_total", []string{"kind", "tcp", "direction", "up"}, 5 * tcpBytes},
		{"masqued_tunnel_bytes_total", []string{"kind", "tcp", "direction", "down"}, 5 * tcpBytes},
		{"masqued_tunnel_bytes_total", []string{"kind", "udp", "direction", "up"}, 2 * datagrams * size},
		{"masqued_tunnel_bytes_total", []string{"kind", "udp", "direction", "down"}, 2 * datagrams * size},
		{"masqued_datagrams_total", []string{"direction", "up"}, 2 * datagrams},
		{"masqued_datagrams_total", []string{"direction", "down"}, 2 * datagrams},
		{"masqued_datagrams_dropped_total", nil, 0},
		{"masqued_tunnel_setup_seconds", []string{"front", "h3", "kind", "tcp"}, 4},
		{"masqued_dns_lookup_seconds", []string{"result", "ok"}, 1},
		{"masqued_tunnel_errors_total", []string{"front", "h3", "proxy_status", "connection_refused"}, 1},
		{"masqued_tunnel_errors_total", []string{"front", "h3", "proxy_status", "http_request_denied"}, 1},
		{"masqued_auth_total", []string{"result", "admitted"}, 8},
		{"masqued_auth_total", []string{"result", "challenged"}, 1},
		{"masqued_connections_total", []string{"front", "h3"}, 2},
		{"masqued_connections_active", []string{"front", "h3"}, 2},
		{"masqued_limit_hits_total", nil, 0},
	} {
		if got := testnet.Metric(t, after, tc.name, tc.labels...) - testnet.Metric(t, before, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	mfs, _ := after.Gather()
	for _, name := range []string{"go_goroutines", "process_open_fds", "masqued_dns_lookup_seconds", "masqued_limit_hits_total"} {
		if !slices.ContainsFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == name }) {
			t.Errorf("no %s", name)
		}
	}
	checkNoAddresses(t, after, d.addr, echo.String(), udpEcho.String(), closed, net.JoinHostPort("127.0.0.1", ""))
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
}
