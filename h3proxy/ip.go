package h3proxy

import (
	"net/http"

	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/tunnel"
)

// serveIP serves a CONNECT-IP request (RFC 9484) through Server.IP: the
// packets travel in QUIC DATAGRAM frames where the client negotiated them,
// else in DATAGRAM capsules on the request stream.
func (s *Server) serveIP(w http.ResponseWriter, r *http.Request) {
	ci, _ := r.Context().Value(connKey{}).(*connInfo)
	withDatagrams, err := s.negotiatedDatagrams(w, r, ci)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	var state *tunnel.ConnState
	if ci != nil {
		state = &ci.state
	}
	se, err := s.IP.Open(r.Context(), s.front, r, state)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	w.Header().Set(http3.CapsuleProtocolHeader, "?1")
	w.WriteHeader(http.StatusOK)
	str, err := w.(http3.HTTPStreamer).HTTPStream()
	if err != nil {
		se.Close()
		return
	}
	var dc tunnel.DatagramConn
	if withDatagrams {
		dc = &capsule.StreamDatagrams{QUICDatagrams: capsule.NewQUICDatagrams(ci.conn, str.StreamID()), Stream: str}
	}
	_ = se.Relay(&stream{str}, dc)
}
