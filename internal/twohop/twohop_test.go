package twohop

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/masqued/masqued/geoegress/geotest"
	"github.com/masqued/masqued/internal/netns"
	"github.com/masqued/masqued/internal/proc"
	"github.com/masqued/masqued/internal/promscrape"
)

// The network: four namespaces on three subnets, joined by veth pairs, with
// no routes beyond each subnet and no forwarding, so the client reaches only
// the relay, and the relay only the client and the egress.
//
//	client 10.200.1.2 — 10.200.1.1 relay 10.200.2.1 — 10.200.2.2 egress 10.200.3.1 — 10.200.3.2 origin
//
// The egress also has the addresses of its pools on the origin's subnet.
var (
	clientNet = netip.MustParsePrefix("10.200.1.0/24")
	egressNet = netip.MustParsePrefix("10.200.2.0/24")
	originNet = netip.MustParsePrefix("10.200.3.0/24")

	clientAddr = netip.MustParseAddr("10.200.1.2")
	relayIn    = netip.MustParseAddr("10.200.1.1") // the relay, facing the client
	relayOut   = netip.MustParseAddr("10.200.2.1") // the relay, facing the egress
	egressIn   = netip.MustParseAddr("10.200.2.2") // the egress, facing the relay
	egressOut  = netip.MustParseAddr("10.200.3.1") // the egress's own address toward the origin
	originAddr = netip.MustParseAddr("10.200.3.2")

	// The egress pools: a default for clients the egress cannot place,
	// London's cell (where the GeoIP database puts the relay) and Berlin's.
	egressDefault = netip.MustParseAddr("10.200.3.10")
	egressLondon  = netip.MustParseAddr("10.200.3.11")
	egressBerlin  = netip.MustParseAddr("10.200.3.12")
)

const (
	london, berlin = "gcpv", "u33d" // geohash cells

	relayPort, trustingPort, untrustingPort    = "4433", "4433", "4434"
	relayAdmin, trustingAdmin, untrustingAdmin = "9464", "9464", "9465" // on each namespace's loopback
	originPort                                 = "443"
)

// chain is the running network: its namespaces, programs and certificates.
type chain struct {
	dir                         string
	masqued, client             string // binaries
	clientNS, relayNS, egressNS *netns.NS
	originNS                    *netns.NS
	procs                       map[string]*proc.Process // relay, egress, untrusting egress, origin
	relayCA, trustingCA         string
	untrustingCA, originCA      string
	bodySum                     string // the origin's body's SHA-256, in hex
}

// How many fetches go through each egress; one tunnel each at every hop.
const (
	udpFetches, tcpFetches = 1, 1                                // the knowledge split, QUIC in QUIC and TLS in TLS
	trustingFetches        = udpFetches + tcpFetches + 2         // and two hints
	fetches                = trustingFetches + untrustingFetches // through the relay, to the origin
	untrustingFetches      = 1
)

// TestTwoHop: see the package comment.
func TestTwoHop(t *testing.T) {
	netns.Require(t)
	// The helper programs are this race-built binary, which would sleep a
	// second at each exit.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	c := &chain{dir: t.TempDir(), procs: map[string]*proc.Process{}}
	c.build(t)
	c.network(t)
	c.start(t)

	// The proxies are the only way to the origin.
	for _, ns := range []*netns.NS{c.clientNS, c.relayNS} {
		if _, err := c.helper(t, ns, "get", "http://"+originAddr.String()+":"+originPort+"/"); err == nil || !strings.Contains(err.Error(), "network is unreachable") {
			t.Fatalf("%s reaching the origin directly: %v, want network is unreachable", ns, err)
		}
	}

	// The knowledge split, with each of the chain's transports: the egress
	// cannot place the client without a hint, so it takes its default pool.
	for _, via := range []string{"udp", "tcp,h2"} {
		t.Run("via="+via, func(t *testing.T) {
			if got := c.fetch(t, trustingPort, c.trustingCA, "-via", via); got != egressDefault {
				t.Errorf("the origin saw %s, want the egress's default pool address %s", got, egressDefault)
			}
		})
	}

	// Geo egress by the client's hint, which goes to the egress alone.
	for _, g := range []struct {
		name, port, ca, hint string
		want                 netip.Addr
	}{
		{"trusted relay/London", trustingPort, c.trustingCA, london, egressLondon},
		{"trusted relay/Berlin", trustingPort, c.trustingCA, berlin, egressBerlin},
		// Placed by the relay's address, in Great Britain: Berlin's
		// hint lies outside it.
		{"untrusted relay/Berlin", untrustingPort, c.untrustingCA, berlin, egressLondon},
	} {
		t.Run("geohash/"+g.name, func(t *testing.T) {
			if got := c.fetch(t, g.port, g.ca, "-geohash", g.hint); got != g.want {
				t.Errorf("-geohash %s: the origin saw %s, want %s", g.hint, got, g.want)
			}
		})
	}

	scraped := map[string]metrics{
		"relay":             c.scrape(t, c.relayNS, relayAdmin),
		"egress":            c.scrape(t, c.egressNS, trustingAdmin),
		"untrusting egress": c.scrape(t, c.egressNS, untrustingAdmin),
	}
	logs := c.stop(t)
	checkRelay(t, logs["relay"], scraped["relay"])
	checkEgress(t, "egress", logs["egress"], scraped["egress"], map[string]int{"default": udpFetches + tcpFetches, "geohash": 2})
	checkEgress(t, "untrusting egress", logs["untrusting egress"], scraped["untrusting egress"], map[string]int{"geohash": untrustingFetches})
	checkOrigin(t, logs["origin"])
}

// checkRelay checks that the relay, from its log (with targets) and its
// metrics, knows the egress and never the origin.
func checkRelay(t *testing.T, log string, m metrics) {
	t.Helper()
	checkAddrs(t, "the relay's log", log, originNet)
	checkAddrs(t, "the relay's /metrics", m.text, originNet)
	var n int
	for l := range strings.Lines(log) {
		if !strings.Contains(l, "msg=tunnel ") {
			continue
		}
		n++
		if !strings.Contains(l, " target="+egressIn.String()+":"+trustingPort) && !strings.Contains(l, " target="+egressIn.String()+":"+untrustingPort) {
			t.Errorf("a relay's access log line names no egress proxy as its target: %s", l)
		}
	}
	if n != fetches {
		t.Errorf("the relay logged %d tunnels, want %d:\n%s", n, fetches, log)
	}
	for kind, want := range map[string]int{"udp": fetches - tcpFetches, "tcp": tcpFetches} {
		if got := promscrape.Sum(m.mfs, "masqued_tunnels_total", "kind", kind); got != float64(want) {
			t.Errorf("the relay counted %v tunnels of kind %s, want %d", got, kind, want)
		}
	}
}

// checkEgress checks that an egress, from its log (with clients) and its
// metrics, knows the relay and never the client, and that it chose its
// addresses from the pools of pools (level: selections).
func checkEgress(t *testing.T, name, log string, m metrics, pools map[string]int) {
	t.Helper()
	checkAddrs(t, "the "+name+"'s log", log, clientNet)
	checkAddrs(t, "the "+name+"'s /metrics", m.text, clientNet)
	var n, want int
	for l := range strings.Lines(log) {
		if !strings.Contains(l, "msg=tunnel ") {
			continue
		}
		n++
		if !strings.Contains(l, " client="+relayOut.String()+":") {
			t.Errorf("an access log line of the %s does not name the relay as the client: %s", name, l)
		}
	}
	for level, w := range pools {
		want += w
		if got := promscrape.Sum(m.mfs, "masqued_egress_selections_total", "family", "ipv4", "pool", level); got != float64(w) {
			t.Errorf("the %s chose %v addresses from %s pools, want %d", name, got, level, w)
		}
	}
	if n != want {
		t.Errorf("the %s logged %d tunnels, want %d:\n%s", name, n, want, log)
	}
}

// checkOrigin checks that the origin saw every request come from an egress
// pool address, tcpFetches of them over HTTP/2 and the rest over HTTP/3.
func checkOrigin(t *testing.T, log string) {
	t.Helper()
	pool := map[netip.Addr]bool{egressDefault: true, egressLondon: true, egressBerlin: true}
	protos := map[string]int{}
	for l := range strings.Lines(log) {
		req, ok := strings.CutPrefix(strings.TrimSpace(l), "request ")
		if !ok {
			continue
		}
		proto, from, _ := strings.Cut(req, " from ")
		protos[proto]++
		if ap, err := netip.ParseAddrPort(from); err != nil || !pool[ap.Addr()] {
			t.Errorf("the origin saw a request from %q, not from an egress pool address", from)
		}
	}
	if want := map[string]int{"HTTP/2.0": tcpFetches, "HTTP/3.0": fetches - tcpFetches}; !maps.Equal(protos, want) {
		t.Errorf("the origin logged requests %v, want %v:\n%s", protos, want, log)
	}
}

// build builds masqued and masque-client.
func (c *chain) build(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.masqued, c.client = filepath.Join(c.dir, "masqued"), filepath.Join(c.dir, "masque-client")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, out := range []string{c.masqued, c.client} {
		wg.Go(func() { errs[i] = proc.GoBuild(ctx, filepath.Join("cmd", filepath.Base(out)), out) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// network creates the namespaces and their links.
func (c *chain) network(t *testing.T) {
	t.Helper()
	c.clientNS, c.relayNS, c.egressNS, c.originNS = netns.New(t, "client"), netns.New(t, "relay"), netns.New(t, "egress"), netns.New(t, "origin")
	at := func(a netip.Addr, p netip.Prefix) string { return netip.PrefixFrom(a, p.Bits()).String() }
	c.clientNS.Link(t, "to-relay", at(clientAddr, clientNet), c.relayNS, "to-client", at(relayIn, clientNet))
	c.relayNS.Link(t, "to-egress", at(relayOut, egressNet), c.egressNS, "to-relay", at(egressIn, egressNet))
	// The egress's side toward the origin holds its pool addresses too.
	egressSide := []string{at(egressOut, originNet)}
	for _, a := range []netip.Addr{egressDefault, egressLondon, egressBerlin} {
		egressSide = append(egressSide, at(a, originNet))
	}
	c.egressNS.Link(t, "to-origin", strings.Join(egressSide, ","), c.originNS, "to-egress", at(originAddr, originNet))
}

// start starts the origin, the relay and two egress proxies: one that
// trusts the relay's geohash hints, and one that trusts another network's
// relays only (the client's, which it never sees).
func (c *chain) start(t *testing.T) {
	t.Helper()
	c.originCA = filepath.Join(c.dir, "origin.pem")
	c.startIn(t, "origin", c.originNS, os.Args[0], "origin", originAddr.String()+":"+originPort, c.originCA)
	c.line(t, "origin", "listening on ")
	c.bodySum = c.line(t, "origin", "body sha256 ")

	poolsFile, geoDB := filepath.Join(c.dir, "pools.csv"), filepath.Join(c.dir, "geo.mmdb")
	pools := fmt.Sprintf("%s,,,,,\n%s,GB,GB-ENG,London,,%s\n%s,DE,DE-BE,Berlin,,%s\n", egressDefault, egressLondon, london, egressBerlin, berlin)
	if err := os.WriteFile(poolsFile, []byte(pools), 0o644); err != nil {
		t.Fatal(err)
	}
	// The relay's address is in London; the hints' countries come from
	// the pools.
	if err := geotest.Write(geoDB, map[netip.Addr]geotest.Place{relayOut: {Country: "GB", Subdivision: "ENG", Lat: 51.5074, Lon: -0.1278}}); err != nil {
		t.Fatal(err)
	}
	masqued := func(name string, ns *netns.NS, listen netip.Addr, port, admin string, args ...string) string {
		args = append([]string{"-listen", listen.String() + ":" + port, "-cert-out", filepath.Join(c.dir, name, "cert.pem"),
			"-admin-listen", "127.0.0.1:" + admin, "-log-level", "debug", "-drain-timeout", "2s"}, args...)
		c.startIn(t, name, ns, c.masqued, args...)
		c.line(t, name, "listening on ")
		return c.line(t, name, "certificate ")
	}
	geoArgs := []string{"-access-log", "client", "-allow-private-targets", "-egress-pools", poolsFile, "-geoip-db", geoDB}
	c.trustingCA = masqued("egress", c.egressNS, egressIn, trustingPort, trustingAdmin,
		append(geoArgs, "-trust-geohash-from-relays", relayOut.String())...)
	c.untrustingCA = masqued("untrusting egress", c.egressNS, egressIn, untrustingPort, untrustingAdmin,
		append(geoArgs, "-trust-geohash-from-relays", clientNet.String())...)
	c.relayCA = masqued("relay", c.relayNS, relayIn, relayPort, relayAdmin, "-access-log", "target",
		"-relay-to", egressIn.String()+":"+trustingPort+","+egressIn.String()+":"+untrustingPort)
}

// startIn starts path with args in ns as the chain's program name, until
// the test ends.
func (c *chain) startIn(t *testing.T, name string, ns *netns.NS, path string, args ...string) {
	t.Helper()
	cmd, args := ns.Args(path, args...)
	p, err := proc.Start(context.Background(), cmd, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("the %s: %v", name, err)
		}
	})
	c.procs[name] = p
}

// stop stops the chain's programs, all at once, and returns what each has
// written, whole: the access log has a line for every tunnel by then.
func (c *chain) stop(t *testing.T) map[string]string {
	t.Helper()
	var wg sync.WaitGroup
	for name, p := range c.procs {
		wg.Go(func() {
			if err := p.Stop(); err != nil {
				t.Errorf("the %s: %v", name, err)
			}
		})
	}
	wg.Wait()
	out := map[string]string{}
	for name, p := range c.procs {
		out[name] = p.Output()
	}
	return out
}

// line returns the rest of the next stdout line of the program name after
// prefix.
func (c *chain) line(t *testing.T, name, prefix string) string {
	t.Helper()
	l, err := c.procs[name].Line(prefix)
	if err != nil {
		t.Fatalf("the %s: %v", name, err)
	}
	return l
}

// helper runs the test binary's helper program (see TestMain) in ns and
// returns its stdout; its error holds its stderr.
func (c *chain) helper(t *testing.T, ns *netns.NS, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := ns.Command(ctx, os.Args[0], args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w: %s", args[0], ns, err, stderr.String())
	}
	return out, nil
}

// fetch fetches the origin through the relay and the egress at port (with
// its certificate ca), running masque-client fetch with args in the client's
// namespace, checks the body against the origin's checksum, and returns the
// address that the origin saw the request come from.
func (c *chain) fetch(t *testing.T, port, ca string, args ...string) netip.Addr {
	t.Helper()
	out := filepath.Join(t.TempDir(), "body")
	args = append([]string{"-proxy", "https://" + relayIn.String() + ":" + relayPort + ",https://" + egressIn.String() + ":" + port,
		"-ca", c.relayCA + "," + ca, "-origin-ca", c.originCA, "-timeout", "30s", "-o", out, "-v"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := c.clientNS.Command(ctx, c.client, append(args, "fetch", "https://"+originAddr.String()+":"+originPort+"/")...).CombinedOutput()
	if err != nil {
		t.Fatalf("masque-client %q: %v\n%s", args, err, b)
	}
	body, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	peer, rest, _ := strings.Cut(string(body), "\n")
	if sum := fmt.Sprintf("%x", sha256.Sum256([]byte(rest))); sum != c.bodySum {
		t.Errorf("the body's SHA-256 is %s (%d bytes), the origin's %s", sum, len(rest), c.bodySum)
	}
	ap, err := netip.ParseAddrPort(peer)
	if err != nil {
		t.Fatalf("the origin's answer does not start with the peer address: %v", err)
	}
	return ap.Addr()
}

// metrics is a /metrics page, as text and parsed.
type metrics struct {
	text string
	mfs  []*dto.MetricFamily
}

// scrape reads /metrics from the admin listener on port of ns's loopback,
// from inside ns.
func (c *chain) scrape(t *testing.T, ns *netns.NS, port string) metrics {
	t.Helper()
	b, err := c.helper(t, ns, "get", "http://127.0.0.1:"+port+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parsing /metrics of %s: %v", ns, err)
	}
	m := metrics{text: string(b)}
	for _, mf := range byName {
		m.mfs = append(m.mfs, mf)
	}
	return m
}

var ipv4 = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)

// checkAddrs fails t if text, what holds, has an IPv4 address in any of
// the prefixes never.
func checkAddrs(t *testing.T, what, text string, never ...netip.Prefix) {
	t.Helper()
	for _, s := range ipv4.FindAllString(text, -1) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		for _, p := range never {
			if p.Contains(a) {
				t.Errorf("%s holds %s (in %s), which it must not know:\n%s", what, a, p, text)
				return
			}
		}
	}
}
