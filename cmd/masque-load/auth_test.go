package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/masqued/masqued/internal/load"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/internal/tunnel"
)

// challenge is the refusal of a request without the right credentials.
type challenge struct{}

func (challenge) Error() string   { return "proxy authorization required" }
func (challenge) HTTPStatus() int { return http.StatusProxyAuthRequired }
func (challenge) Header() http.Header {
	return http.Header{"Proxy-Authenticate": {`Bearer realm="load"`}}
}

// Authenticated load: the Authorizer on the dialer answers the proxy's 407s
// (-proxy-authorization here, a Privacy Pass token pool later); without it
// every tunnel is refused, and the breakdown says so.
func TestProxyAuthorization(t *testing.T) {
	p := proxytest.StartH3(t, testnet.IPv4, true, func(c *tunnel.Config) {
		c.Auth = tunnel.AuthenticatorFunc(func(r *http.Request) error {
			if r.Header.Get("Proxy-Authorization") != "Bearer load-test" {
				return challenge{}
			}
			return nil
		})
	})
	args := []string{"-proxy", p.URL, "-ca", p.CertFile, "-mode", "setup", "-c", "1", "-t", "2", "-d", "300ms", "-warmup", "0s", "-json"}

	stdout, stderr, err := runLoad(t, append(args, "-proxy-authorization", "Bearer load-test")...)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Ops == 0 || rep.Errors != 0 {
		t.Fatalf("with credentials: %v, %d ops, errors %v", err, rep.Ops, rep.ErrorsByClass)
	}

	for _, authz := range []string{"", "Bearer wrong"} {
		stdout, _, err = runLoad(t, append(args, "-proxy-authorization", authz)...)
		if err == nil || !strings.Contains(err.Error(), "no operation succeeded") {
			t.Errorf("with %q: error %v", authz, err)
		}
		rep = load.Report{}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Errors == 0 || rep.ErrorsByClass["407 http_request_denied"] != rep.Errors {
			t.Errorf("with %q: %v, errors %v", authz, err, rep.ErrorsByClass)
		}
	}
}
