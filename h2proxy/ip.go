package h2proxy

import (
	"net/http"

	"github.com/masqued/masqued/tunnel"
)

// serveIP serves a CONNECT-IP request (RFC 9484) over HTTP/2 through
// Server.IP, its packets in DATAGRAM capsules on the stream.
func (s *Server) serveIP(w http.ResponseWriter, r *http.Request, front *tunnel.Front, ci *connInfo) {
	se, err := s.IP.Open(r.Context(), front, r, &ci.state)
	if err != nil {
		front.WriteError(w, err)
		return
	}
	w.Header().Set("Capsule-Protocol", "?1")
	w.WriteHeader(http.StatusOK)
	client := newH2Stream(w, r)
	if err := client.flush(); err != nil {
		se.Close()
		return
	}
	_ = se.Relay(client, nil)
	if client.aborted() {
		panic(http.ErrAbortHandler) // reset, so that the client sees a failure
	}
}
