package h3proxy

import (
	"crypto/rand"
	"net/http"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/masque/quicproxy"
	"github.com/masqued/masqued/tunnel"
)

// serveForwarding serves HTTP/3 on a socket that offers forwarded mode
// (draft-ietf-masque-quic-proxy): quic-go on a Transport of its own, whose
// connection IDs leave the bit that tags the proxy's VCIDs clear, so that
// the socket can tell its own packets from forwarded ones.
func (s *Server) serveForwarding(fs *tunnel.ForwardSocket) error {
	s.forward.Store(fs)
	tr := &quic.Transport{Conn: fs, ConnectionIDGenerator: untaggedCIDs{}}
	defer tr.Close()
	ln, err := tr.ListenEarly(s.h3.TLSConfig, s.h3.QUICConfig)
	if err != nil {
		return err
	}
	return s.h3.ServeListener(ln)
}

// untaggedCIDs makes 8-byte connection IDs whose first byte has its top bit
// clear (see tunnel.VCIDTagged).
type untaggedCIDs struct{}

func (untaggedCIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return quic.ConnectionID{}, err
	}
	b[0] &^= 0x80
	return quic.ConnectionIDFromBytes(b[:]), nil
}

func (untaggedCIDs) ConnectionIDLen() int { return 8 }

// negotiateForwarding offers forwarded mode to a UDP tunnel whose client
// asked for it, on a server that serves a ForwardSocket, and sets the
// response's headers. Elsewhere it sets none, and the client tunnels every
// packet as RFC 9298 says.
func (s *Server) negotiateForwarding(w http.ResponseWriter, r *http.Request, ci *connInfo, t *tunnel.Tunnel) {
	fs := s.forward.Load()
	req := r.Header.Get(quicproxy.HeaderForwarding)
	if fs == nil || req == "" || ci == nil {
		return
	}
	// No port sharing: each tunnel has a target socket of its own.
	w.Header().Set(quicproxy.HeaderPortSharing, "?0")
	resp, fw := fs.Negotiate(req, ci.conn)
	if fw == nil {
		return
	}
	t.UseForwarding(fw)
	w.Header().Set(quicproxy.HeaderForwarding, resp)
}
