package runner

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/masqued/masqued/geoegress/geotest"
	"github.com/masqued/masqued/internal/proc"
	"github.com/masqued/masqued/internal/promscrape"
	"github.com/masqued/masqued/privacypass"
)

// feature is something a server offers and a case or client needs.
type feature uint

const (
	tcpFront   feature = 1 << iota // HTTP/2 and HTTP/1.1 over TLS on TCP
	connect                        // CONNECT (TCP tunnels) and forwarded http:// requests
	capsules                       // UDP payloads in DATAGRAM capsules (RFC 9297)
	auth                           // Privacy Pass tokens (RFC 9577)
	geo                            // egress addresses chosen by the client's location
	policy                         // refuses loopback and private targets
	forwarding                     // QUIC-aware forwarded mode (draft-ietf-masque-quic-proxy)
	connectIP                      // CONNECT-IP (RFC 9484)
)

var featureNames = []string{"an HTTP/2 front", "CONNECT", "DATAGRAM capsules", "Privacy Pass", "geo egress", "a target policy", "forwarded mode", "CONNECT-IP"}

func (f feature) String() string {
	var names []string
	for i, n := range featureNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// proxyOptions say how a case wants the server set up.
type proxyOptions struct {
	auth   bool // Privacy Pass, with masqued's in-process issuer and demo account
	geo    bool // the client's location picks the egress address
	hint   bool // with geo: the client sends manchesterHint
	strict bool // no tunnels to loopback (the origins are there)
	// perConn, with auth: a token admits a connection, not a tunnel
	// (-pp-per-connection), as a browser's long-lived connection needs.
	perConn bool
	// forward: clients reach masqued on its -forward-listen port, where it
	// offers forwarded mode.
	forward bool
	// ip: CONNECT-IP, masqued in network namespaces of the cell's own
	// (connectip.go).
	ip bool
}

// server is a proxy the runner can start.
type server struct {
	name  string
	has   feature
	start func(ctx context.Context, c *cellRun, o proxyOptions) (*proxy, error)
}

var servers = []*server{
	{name: "masqued", has: tcpFront | connect | capsules | auth | geo | policy | forwarding | connectIP, start: startMasqued},
	{name: "masque-go", start: startMasqueGo},
}

// proxy is a running server, as its clients reach it.
type proxy struct {
	url      string // https://127.0.0.1:PORT
	addr     netip.AddrPort
	certFile string
	template string // its CONNECT-UDP URI template, in full
	// egress is where the origins should see tunnels come from; the zero
	// Addr when the server has no say (masque-go's: the host's default).
	egress netip.Addr
	pp     *ppAccount // with proxyOptions.auth
	admin  string     // masqued's admin listener (/metrics), "" for other servers
	p      *proc.Process
	ip     *ipNet // CONNECT-IP cells' namespaces
}

// metric is the sum of the proxy's series of name whose labels include
// labels ("key", "value", …): what masqued counted.
func (x *proxy) metric(ctx context.Context, name string, labels ...string) (float64, error) {
	if x.admin == "" {
		return 0, errors.New("the server has no metrics")
	}
	mfs, err := promscrape.Scrape(ctx, "http://"+x.admin+"/metrics")
	if err != nil {
		return 0, err
	}
	return promscrape.Sum(mfs, name, labels...), nil
}

// counted checks that each of the proxy's counters (name, then label pairs)
// is at least 1, naming the first that is not.
func (x *proxy) counted(ctx context.Context, counters ...[]string) error {
	for _, c := range counters {
		n, err := x.metric(ctx, c[0], c[1:]...)
		if err != nil {
			return err
		}
		if n < 1 {
			return fmt.Errorf("masqued counted no %s%q", c[0], c[1:])
		}
	}
	return nil
}

// ppAccount is masqued's demo Privacy Pass account and where to use it.
type ppAccount struct{ keyFile, attester, directory string }

// Egress addresses: the default pool's, that of the cell the GeoIP
// database puts 127.0.0.1 (every client) in, and that of the cell a client
// moves to with a Sec-CH-Geohash hint.
var (
	defaultEgress    = netip.MustParseAddr("127.0.0.9")
	londonEgress     = netip.MustParseAddr("127.0.0.2")
	manchesterEgress = netip.MustParseAddr("127.0.0.3")
)

// manchesterHint is a Sec-CH-Geohash value in Manchester (53.48, -2.24), in
// the same country as London, so that masqued takes it.
const manchesterHint = "gcw2hz"

// egressFeed is masqued's -egress-pools: London (geohash gcpv), Manchester
// (gcw2) and a default for clients the database does not place.
const egressFeed = "127.0.0.2,GB,GB-ENG,London,,gcpv\n127.0.0.3,GB,GB-ENG,Manchester,,gcw2\n127.0.0.9,,,,,\n"

// startMasqued starts masqued on a free port with egress pools, so that the
// origins can tell tunnelled requests (from 127.0.0.9, or 127.0.0.2 for the
// geo case) from direct ones (127.0.0.1).
func startMasqued(ctx context.Context, c *cellRun, o proxyOptions) (*proxy, error) {
	if o.ip {
		return startMasquedIP(ctx, c, o)
	}
	feed := filepath.Join(c.dir, "egress.csv")
	if err := os.WriteFile(feed, []byte(egressFeed), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-cert-out", filepath.Join(c.dir, "cert.pem"), "-log-level", "info", "-egress-pools", feed,
		// A browser that quits leaves its tunnels for the idle timeout to
		// end; a cell's masqued need not wait 10 s for them.
		"-drain-timeout", "2s"}
	egress := defaultEgress
	if o.geo {
		db := filepath.Join(c.dir, "geo.mmdb")
		err := geotest.Write(db, map[netip.Addr]geotest.Place{
			netip.MustParseAddr("127.0.0.1"): {Country: "GB", Subdivision: "ENG", Lat: 51.5074, Lon: -0.1278},
		})
		if err != nil {
			return nil, err
		}
		args, egress = append(args, "-geoip-db", db), londonEgress
		if o.hint {
			egress = manchesterEgress
		}
	}
	if !o.strict {
		args = append(args, "-allow-private-targets")
	}
	var pp string
	if o.auth {
		port, err := freeTCPPort()
		if err != nil {
			return nil, err
		}
		pp = "127.0.0.1:" + port
		args = append(args, "-auth", "privacypass", "-pp-listen", pp, "-pp-state", filepath.Join(c.dir, "pp"))
		if o.perConn {
			args = append(args, "-pp-per-connection")
		}
	}
	if o.forward {
		args = append(args, "-forward-listen", "127.0.0.1:0")
	}
	args = append(args, c.env.masquedArgs...)
	p, err := c.start(ctx, c.env.bin["masqued"], args...)
	if err != nil {
		return nil, err
	}
	addr, certFile, err := masquedLines(p)
	if err != nil {
		return nil, err
	}
	admin, err := p.Line("admin on ")
	if err != nil {
		return nil, err
	}
	if o.forward {
		if addr, err = p.Line("forwarding on "); err != nil {
			return nil, err
		}
	}
	x := &proxy{url: "https://" + addr, certFile: certFile, egress: egress, admin: admin, p: p}
	if x.addr, err = netip.ParseAddrPort(addr); err != nil {
		return nil, err
	}
	x.template = x.url + "/.well-known/masque/udp/{target_host}/{target_port}/"
	if o.auth {
		x.pp = &ppAccount{
			keyFile:   filepath.Join(c.dir, "pp", "demo.key"),
			attester:  "https://" + pp + privacypass.DefaultRequestPath,
			directory: "https://" + pp + privacypass.DirectoryPath,
		}
	}
	return x, nil
}

// masquedLines reads what masqued p prints once it serves: where it listens
// and the certificate to trust.
func masquedLines(p *proc.Process) (addr, certFile string, err error) {
	if addr, err = p.Line("listening on "); err != nil {
		return "", "", err
	}
	certFile, err = p.Line("certificate ")
	return addr, certFile, err
}

// startRelay starts a masqued ingress relay that tunnels to egress alone
// (-relay-to), with the production policy for every other target.
func (c *cellRun) startRelay(ctx context.Context, egress *proxy) (*proxy, error) {
	args := append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-cert-out", filepath.Join(c.dir, "relay.pem"), "-log-level", "info",
		"-drain-timeout", "2s", "-relay-to", egress.addr.String()}, c.env.masquedArgs...)
	p, err := c.start(ctx, c.env.bin["masqued"], args...)
	if err != nil {
		return nil, fmt.Errorf("starting the relay: %w", err)
	}
	x := &proxy{p: p}
	for _, l := range []struct {
		prefix string
		v      *string
	}{{"listening on ", &x.url}, {"certificate ", &x.certFile}, {"admin on ", &x.admin}} {
		if *l.v, err = p.Line(l.prefix); err != nil {
			return nil, fmt.Errorf("starting the relay: %w", err)
		}
	}
	if x.addr, err = netip.ParseAddrPort(x.url); err != nil {
		return nil, err
	}
	x.url = "https://" + x.url
	x.template = x.url + "/.well-known/masque/udp/{target_host}/{target_port}/"
	return x, nil
}

// startMasqueGo starts masque-go's proxy (CONNECT-UDP over HTTP/3 only).
func startMasqueGo(ctx context.Context, c *cellRun, _ proxyOptions) (*proxy, error) {
	certFile := filepath.Join(c.dir, "cert.pem")
	p, err := c.start(ctx, c.env.bin["masquego"], "proxy", "-listen", "127.0.0.1:0", "-cert-out", certFile)
	if err != nil {
		return nil, err
	}
	addr, err := p.Line("listening on ")
	if err != nil {
		return nil, err
	}
	x := &proxy{url: "https://" + addr, certFile: certFile, p: p}
	if x.addr, err = netip.ParseAddrPort(addr); err != nil {
		return nil, err
	}
	x.template = x.url + "/.well-known/masque/udp/{target_host}/{target_port}/"
	return x, nil
}

// freeTCPPort returns a loopback TCP port that was free a moment ago.
func freeTCPPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// SPKIHash is the base64 SHA-256 of the public key of the first
// certificate in a PEM file: what Chromium's
// --ignore-certificate-errors-spki-list takes to trust a proxy.
func SPKIHash(pemBytes []byte) (string, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil || b.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", fmt.Errorf("parsing the certificate: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}
