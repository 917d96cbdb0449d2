package tunnel

import (
	"net/http"
	"time"

	"github.com/masqued/masqued/masque"
	"github.com/prometheus/client_golang/prometheus"
)

// Datagram drop reasons, the label values of masqued_datagrams_dropped_total.
const (
	DropTooLarge       = "too_large"       // larger than the QUIC path allows or the payload cap
	DropUnknownContext = "unknown_context" // Context ID other than 0 (RFC 9298 §4)
	DropMalformed      = "malformed"       // no Context ID
	DropWriteError     = "write_error"     // the target socket refused it (e.g. ICMP unreachable)
)

var dropReasons = []string{DropTooLarge, DropUnknownContext, DropMalformed, DropWriteError}

// Authentication outcomes, the label values of masqued_auth_total.
const (
	AuthAdmitted    = "admitted"     // Auth returned nil
	AuthChallenged  = "challenged"   // 407: no or unusable credentials
	AuthDenied      = "denied"       // 403 and other refusals
	AuthRateLimited = "rate_limited" // 429: the credential's rate is used up
)

var authResults = []string{AuthAdmitted, AuthChallenged, AuthDenied, AuthRateLimited}

// Limits hit, the label values of masqued_limit_hits_total.
const (
	LimitTunnels        = "max_tunnels"          // Limits.MaxTunnels: 503
	LimitTunnelsPerConn = "max_tunnels_per_conn" // Limits.MaxTunnelsPerConn: 429
	LimitRate           = "credential_rate"      // an Authenticator's rate limit: 429
	LimitIdle           = "idle_timeout"         // Limits.IdleTimeout closed a tunnel
)

var limitNames = []string{LimitTunnels, LimitTunnelsPerConn, LimitRate, LimitIdle}

// Metrics are the tunnel core's Prometheus collectors. They carry no
// per-client or per-target labels. Create one per proxy with NewMetrics and
// pass it in Config; a nil *Metrics counts nothing.
type Metrics struct {
	active    *prometheus.GaugeVec     // front, kind
	total     *prometheus.CounterVec   // front, kind
	errors    *prometheus.CounterVec   // front, proxy_status
	setup     *prometheus.HistogramVec // front, kind
	bytes     *prometheus.CounterVec   // kind, direction
	datagrams *prometheus.CounterVec   // direction
	dropped   *prometheus.CounterVec   // reason
	conns     *prometheus.GaugeVec     // front
	connTotal *prometheus.CounterVec   // front
	auth      *prometheus.CounterVec   // result
	limits    *prometheus.CounterVec   // limit
	dns       *prometheus.HistogramVec // result

	// Forwarded mode (draft-ietf-masque-quic-proxy), resolved up front:
	// packets are counted one by one on the relay's path.
	forwardedVec *prometheus.CounterVec // direction
	fwdUp        prometheus.Counter
	fwdDown      prometheus.Counter
	fwdDropped   *prometheus.CounterVec // reason
	fwdDrops     map[string]prometheus.Counter
}

// NewMetrics creates the core's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "masqued_tunnels_active", Help: "Tunnels open now.",
		}, []string{"front", "kind"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_tunnels_total", Help: "Tunnels opened.",
		}, []string{"front", "kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_tunnel_errors_total", Help: "Tunnel requests refused or failed, by Proxy-Status error type.",
		}, []string{"front", "proxy_status"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "masqued_tunnel_setup_seconds",
			Help:    "Time from request to target connected.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"front", "kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_tunnel_bytes_total", Help: "Payload bytes relayed; up is client to target.",
		}, []string{"kind", "direction"}),
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_datagrams_total", Help: "UDP datagrams relayed; up is client to target.",
		}, []string{"direction"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_datagrams_dropped_total", Help: "UDP datagrams dropped, by reason.",
		}, []string{"reason"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "masqued_connections_active", Help: "Client connections open now (front h3: QUIC connections).",
		}, []string{"front"}),
		connTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_connections_total", Help: "Client connections accepted (front h3: QUIC connections).",
		}, []string{"front"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_auth_total", Help: "Tunnel requests put to the authenticator, by outcome.",
		}, []string{"result"}),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_limit_hits_total", Help: "Requests refused or tunnels closed because a limit was reached.",
		}, []string{"limit"}),
		dns: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "masqued_dns_lookup_seconds",
			Help:    "Time to resolve a target name (cache hits included), by result.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18),
		}, []string{"result"}),
		forwardedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_forwarded_packets_total", Help: "QUIC packets relayed in forwarded mode (draft-ietf-masque-quic-proxy), outside the client's connection; up is client to target. Also in masqued_datagrams_total.",
		}, []string{"direction"}),
		fwdDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_forwarded_dropped_total", Help: "Forwarded-mode packets dropped, by reason.",
		}, []string{"reason"}),
	}
	m.fwdUp, m.fwdDown = m.forwardedVec.WithLabelValues("up"), m.forwardedVec.WithLabelValues("down")
	m.fwdDrops = make(map[string]prometheus.Counter, len(fwdDropReasons))
	for _, r := range fwdDropReasons {
		m.fwdDrops[r] = m.fwdDropped.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.active, m.total, m.errors, m.setup, m.bytes, m.datagrams, m.dropped, m.conns, m.connTotal, m.auth, m.limits, m.dns, m.forwardedVec, m.fwdDropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range dropReasons { // export zeros, so rates work from the start
		m.dropped.WithLabelValues(r)
	}
	for _, r := range authResults {
		m.auth.WithLabelValues(r)
	}
	for _, l := range limitNames {
		m.limits.WithLabelValues(l)
	}
	m.dns.WithLabelValues("ok")
	m.dns.WithLabelValues("error")
	return m, nil
}

// kindCounters are the collectors one front and one tunnel kind touch,
// resolved once so the relay loops do no label lookups.
type kindCounters struct {
	active    prometheus.Gauge
	total     prometheus.Counter
	setup     prometheus.Observer
	bytesUp   prometheus.Counter
	bytesDown prometheus.Counter
	dgUp      prometheus.Counter
	dgDown    prometheus.Counter
	dropped   map[string]prometheus.Counter
}

func (m *Metrics) forKind(front string, k Kind) *kindCounters {
	if m == nil {
		return nil
	}
	kc := &kindCounters{
		active:    m.active.WithLabelValues(front, k.String()),
		total:     m.total.WithLabelValues(front, k.String()),
		setup:     m.setup.WithLabelValues(front, k.String()),
		bytesUp:   m.bytes.WithLabelValues(k.String(), "up"),
		bytesDown: m.bytes.WithLabelValues(k.String(), "down"),
		dgUp:      m.datagrams.WithLabelValues("up"),
		dgDown:    m.datagrams.WithLabelValues("down"),
		dropped:   make(map[string]prometheus.Counter, len(dropReasons)),
	}
	for _, r := range dropReasons {
		kc.dropped[r] = m.dropped.WithLabelValues(r)
	}
	return kc
}

func (m *Metrics) countError(front, status string) {
	if m != nil {
		m.errors.WithLabelValues(front, status).Inc()
	}
}

// countAuth counts the authenticator's answer err (nil: admitted).
func (m *Metrics) countAuth(err error) {
	if m == nil {
		return
	}
	result := AuthAdmitted
	if err != nil {
		switch status, _ := masque.StatusOf(err); status {
		case http.StatusProxyAuthRequired, http.StatusUnauthorized:
			result = AuthChallenged
		case http.StatusTooManyRequests:
			result = AuthRateLimited
			m.limits.WithLabelValues(LimitRate).Inc()
		default:
			result = AuthDenied
		}
	}
	m.auth.WithLabelValues(result).Inc()
}

// CountLimit counts one hit of the limit named limit (one of the Limit
// constants).
func (m *Metrics) CountLimit(limit string) {
	if m != nil {
		m.limits.WithLabelValues(limit).Inc()
	}
}

func (m *Metrics) observeDNS(d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.dns.WithLabelValues(result).Observe(d.Seconds())
}

// The methods below do nothing on a nil receiver, so relays need no checks.

func (m *Metrics) forwarded(up bool) {
	switch {
	case m == nil:
	case up:
		m.fwdUp.Inc()
	default:
		m.fwdDown.Inc()
	}
}

func (m *Metrics) forwardDrop(reason string) {
	if m != nil {
		m.fwdDrops[reason].Inc()
	}
}

func (k *kindCounters) drop(reason string) {
	if k != nil {
		k.dropped[reason].Inc()
	}
}

func (k *kindCounters) up(n int) {
	if k != nil {
		k.bytesUp.Add(float64(n))
	}
}

func (k *kindCounters) down(n int) {
	if k != nil {
		k.bytesDown.Add(float64(n))
	}
}

func (k *kindCounters) datagramUp(n int) {
	if k != nil {
		k.dgUp.Inc()
		k.bytesUp.Add(float64(n))
	}
}

func (k *kindCounters) datagramDown(n int) {
	if k != nil {
		k.dgDown.Inc()
		k.bytesDown.Add(float64(n))
	}
}
