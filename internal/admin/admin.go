// Package admin serves masqued's operator endpoints on a listener of their
// own, apart from the proxy's port, so that metrics and profiles are never
// reachable by the clients the proxy serves (bind it to loopback or a
// management network):
//
//	/metrics        Prometheus exposition of the registry given
//	/healthz        200 while the process runs
//	/readyz         200 while it serves every front, 503 while it starts or drains
//	/debug/pprof/   net/http/pprof
package admin

import (
	"net/http"
	"net/http/pprof"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// State is what /readyz reports. The zero State is Starting; it is safe for
// concurrent use.
type State struct{ v atomic.Int32 }

const (
	Starting int32 = iota // not yet serving every front (a restarted process waits for its parent)
	Ready                 // serving
	Draining              // shutting down or handing over; load balancers should stop sending
)

var stateNames = [...]string{"starting", "ready", "draining"}

// Set sets the state to s (Starting, Ready or Draining).
func (st *State) Set(s int32) { st.v.Store(s) }

// Handler returns the admin endpoints over g's metrics and st's state.
func Handler(g prometheus.Gatherer, st *State) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s := st.v.Load()
		if s != Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(stateNames[s] + "\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
