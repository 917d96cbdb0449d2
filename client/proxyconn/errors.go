package proxyconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Peer names the end of a connection whose certificate failed: a client of
// masqued verifies two, the proxy's and, inside the tunnel, the origin's, and
// each is fixed by trusting a different file.
type Peer int

const (
	PeerProxy  Peer = iota // the MASQUE proxy
	PeerOrigin             // the server at the far end of a tunnel
)

func (p Peer) String() string {
	if p == PeerOrigin {
		return "origin"
	}
	return "proxy"
}

// CertProblem says why a certificate did not verify.
type CertProblem int

const (
	CertUntrusted CertProblem = iota // no trusted root vouches for it
	CertWrongName                    // it does not cover the name dialled
	CertExpired                      // it has expired or is not valid yet
	CertInvalid                      // it is unusable otherwise
)

// CertError reports a peer's certificate that did not verify, saying which
// peer, where and why, so that a program can tell its user which trust
// setting to fix (a TLS error alone reads the same for both peers).
type CertError struct {
	Peer    Peer
	Address string // the proxy's URL, or the origin's host:port
	Problem CertProblem
	Err     error // the failure, holding a *tls.CertificateVerificationError
}

func (e *CertError) Error() string {
	at := "at"
	if e.Peer == PeerOrigin {
		at = "for"
	}
	what := [...]string{
		CertUntrusted: "is not trusted",
		CertWrongName: "does not cover that name",
		CertExpired:   "has expired or is not valid yet",
		CertInvalid:   "is not valid",
	}[e.Problem]
	return fmt.Sprintf("the %s's certificate %s %s %s (%s)", e.Peer, at, e.Address, what, e.Reason())
}

func (e *CertError) Unwrap() error { return e.Err }

// Reason is the verifier's own words, such as "x509: certificate signed by
// unknown authority", without the transport's wrapping around them.
func (e *CertError) Reason() string {
	var cve *tls.CertificateVerificationError
	if errors.As(e.Err, &cve) && cve.Err != nil {
		return cve.Err.Error()
	}
	return e.Err.Error()
}

// CheckCert returns err as a *CertError for peer at address when it is a
// failure to verify the peer's certificate, and err unchanged otherwise (nil
// stays nil, and an error that holds a CertError already is kept).
func CheckCert(peer Peer, address string, err error) error {
	var cve *tls.CertificateVerificationError
	var ce *CertError
	if !errors.As(err, &cve) || errors.As(err, &ce) {
		return err
	}
	e := &CertError{Peer: peer, Address: address, Problem: CertInvalid, Err: err}
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, new(x509.UnknownAuthorityError)):
		e.Problem = CertUntrusted
	case errors.As(err, new(x509.HostnameError)):
		e.Problem = CertWrongName
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		e.Problem = CertExpired
	}
	return e
}

// TargetRefusedError reports a UDP tunnel that the proxy ended because its
// target refused the tunnel's packets (ICMP port unreachable) before it had
// sent any back: most often nothing listens on that UDP port. A CONNECT
// stream carries no HTTP fields after the 2xx (RFC 9114 §4.4), so masqued
// says it by how it ends the stream: over HTTP/3 a reset with
// H3_CONNECT_ERROR, over HTTP/2 a clean end of a stream the client had not
// ended, over HTTP/1.1 a TCP reset. A tunnel's ReadFrom and WriteTo return
// it once the proxy has ended the tunnel so.
type TargetRefusedError struct {
	Target string // host:port
}

func (e *TargetRefusedError) Error() string {
	return fmt.Sprintf("the target %s refused the UDP tunnel's packets (ICMP port unreachable, reported by the proxy)", e.Target)
}
