package iptunnel

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Packet drop reasons, the label values of masqued_ip_packets_dropped_total.
const (
	dropBadSource  = iota // from the client, with a source it was not assigned
	dropOutOfScope        // from the client, outside its request's scope
	dropProhibited        // from the client, to a destination the Policy refuses
	dropMalformed         // not an IP packet, or a bad Context ID
	dropNoTunnel          // from the device, to an address no tunnel has
	dropQueueFull         // the tunnel's queue was full
	dropTooLarge          // too large for the client's QUIC path (Packet Too Big sent)
	dropHopLimit          // TTL or Hop Limit ran out
	dropWriteError        // the device or the client's stream refused it
	numDrops
)

var dropNames = [numDrops]string{"bad_source", "out_of_scope", "prohibited", "malformed", "no_tunnel",
	"queue_full", "too_large", "hop_limit", "write_error"}

// metrics are the Server's collectors, resolved up front so the packet path
// does no label lookups.
type metrics struct {
	dropped [numDrops]prometheus.Counter
	icmp    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "masqued_ip_packets_dropped_total", Help: "CONNECT-IP packets dropped, by reason.",
	}, []string{"reason"})
	icmp := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "masqued_ip_icmp_sent_total", Help: "ICMP errors CONNECT-IP sent for dropped packets (RFC 9484 §4.4.1).",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{vec, icmp} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m := &metrics{icmp: icmp}
	for i, n := range dropNames {
		m.dropped[i] = vec.WithLabelValues(n)
	}
	return m, nil
}

func (m *metrics) drop(reason int) { m.dropped[reason].Inc() }
