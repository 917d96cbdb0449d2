package client

import (
	"fmt"
	"time"

	"github.com/masqued/masqued/client/proxyconn"
)

// CertError reports a certificate that did not verify, and whose: the
// proxy's (from Dial) or an origin's (inside a tunnel). Peer and Problem
// tell a program which trust setting its user has to fix.
type CertError = proxyconn.CertError

// Peer names the end whose certificate failed: PeerProxy or PeerOrigin.
type Peer = proxyconn.Peer

// CertProblem says why a certificate did not verify.
type CertProblem = proxyconn.CertProblem

// The peers and problems a CertError names.
const (
	PeerProxy     = proxyconn.PeerProxy
	PeerOrigin    = proxyconn.PeerOrigin
	CertUntrusted = proxyconn.CertUntrusted
	CertWrongName = proxyconn.CertWrongName
	CertExpired   = proxyconn.CertExpired
	CertInvalid   = proxyconn.CertInvalid
)

// ProxyError is a proxy's refusal of a tunnel: its status, Proxy-Status and
// challenges.
type ProxyError = proxyconn.ProxyError

// SilentTargetError reports a UDP tunnel's target from which nothing came
// back while QUIC tried to reach it.
type SilentTargetError = proxyconn.SilentTargetError

// TargetRefusedError reports a UDP tunnel that the proxy ended because its
// target refused the packets (ICMP port unreachable) before answering any:
// ReadFrom and WriteTo of the tunnel return it, and so does HTTP/3 over it.
type TargetRefusedError = proxyconn.TargetRefusedError

// NotListeningError reports a proxy address where nothing listens: TCP was
// refused, and QUIC had no answer within the grace Dial gives it after that.
type NotListeningError struct {
	Address string        // host:port
	Waited  time.Duration // how long QUIC had, from the start of Dial
	Err     error         // both transports' errors
}

func (e *NotListeningError) Error() string {
	return fmt.Sprintf("nothing listening at %s (TCP refused, no QUIC answer within %s)", e.Address, e.Waited)
}

func (e *NotListeningError) Unwrap() error { return e.Err }
