package main

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/masque"
)

// fixedError is a failure with what the user can do about it, in this
// command's flags: the library's errors say what failed, and only the
// command knows its flags.
type fixedError struct {
	err error
	fix string
}

func (e *fixedError) Error() string { return e.err.Error() + ": " + e.fix }
func (e *fixedError) Unwrap() error { return e.err }

// withFix adds the fix to the failures a flag or a step of the user's
// fixes, and returns the others unchanged.
func (o *options) withFix(err error) error {
	var ce *client.CertError
	var nl *client.NotListeningError
	var pe *client.ProxyError
	var st *client.SilentTargetError
	var tr *client.TargetRefusedError
	fix := ""
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		fix = o.certFix(ce)
	case errors.As(err, &nl):
		fix = "start masqued, or point -proxy at where it listens"
	case errors.As(err, &tr):
		fix = "is anything listening on that UDP port?"
	case errors.As(err, &st):
		fix = "is anything listening on that UDP port, and does it speak HTTP/3?"
	case errors.As(err, &pe):
		switch {
		case strings.Contains(pe.ProxyStatus, "error="+masque.StatusConnectionRefused):
			fix = "the target refused the connection: is anything listening on the target's port?"
		case strings.Contains(pe.ProxyStatus, masque.RelayRefusal):
			fix = "it is an ingress relay: give it first in -proxy, then the egress proxy it relays to (-proxy https://RELAY,https://EGRESS)"
		case strings.Contains(pe.ProxyStatus, "error="+masque.StatusIPProhibited) &&
			!strings.Contains(pe.ProxyStatus, "the proxy itself"): // no flag allows that
			fix = "the proxy refuses loopback and private targets (masqued -allow-private-targets allows them)"
		}
	}
	if fix == "" {
		return err
	}
	return &fixedError{err: err, fix: fix}
}

// certFix says which flag makes a certificate that failed acceptable, or
// what else to do.
func (o *options) certFix(e *client.CertError) string {
	proxy := e.Peer == client.PeerProxy
	switch e.Problem {
	case client.CertUntrusted:
		printed := `the certificate masqued printed at start ("certificate ` + masquedCertPath() + `")`
		switch {
		case proxy && o.ca == "":
			return "pass -ca FILE with " + printed
		case proxy:
			return "-ca " + o.ca + " holds another certificate: pass " + printed
		case o.originCA == "":
			return "pass -origin-ca FILE with the origin's certificate or its CA's"
		default:
			return "-origin-ca " + o.originCA + " holds neither the origin's certificate nor its CA's"
		}
	case client.CertWrongName:
		names := "the names it covers"
		var he x509.HostnameError
		if errors.As(e, &he) && he.Certificate != nil {
			names = strings.Join(append(he.Certificate.DNSNames, ipStrings(he.Certificate)...), ", ")
		}
		if proxy {
			return "name the proxy in -proxy by one of " + names
		}
		return "fetch a URL whose host is one of " + names
	case client.CertExpired:
		return "the " + e.Peer.String() + " needs a new certificate, unless this machine's clock is wrong"
	}
	return ""
}

func ipStrings(c *x509.Certificate) []string {
	var s []string
	for _, ip := range c.IPAddresses {
		s = append(s, ip.String())
	}
	return s
}

// masquedCertPath is where masqued writes its self-signed certificate by
// default, the path it prints at start: cert.pem in its XDG state directory.
func masquedCertPath() string {
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "masqued", "cert.pem")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "masqued", "cert.pem")
	}
	return "~/.local/state/masqued/cert.pem"
}
