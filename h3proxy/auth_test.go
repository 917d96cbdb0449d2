package h3proxy

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// refusal is an Authenticator's 407: a status and a challenge.
type refusal struct{}

func (refusal) Error() string   { return "credentials required" }
func (refusal) HTTPStatus() int { return http.StatusProxyAuthRequired }
func (refusal) Header() http.Header {
	return http.Header{"Proxy-Authenticate": {`Test realm="a"`, `Test realm="b"`}}
}

// requireCredential admits requests carrying Proxy-Authorization: Test ok.
func requireCredential(c *tunnel.Config) {
	c.Auth = tunnel.AuthenticatorFunc(func(r *http.Request) error {
		if r.Header.Get("Proxy-Authorization") != "Test ok" {
			return refusal{}
		}
		return nil
	})
}

// authorizer answers every challenge with credential and records the
// challenges it was given.
type authorizer struct {
	credential string
	err        error
	mu         sync.Mutex
	calls      [][]string
}

func (a *authorizer) Authorize(_ context.Context, challenges []string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, challenges)
	if challenges == nil {
		return "", a.err
	}
	return a.credential, a.err
}

func TestAuthorizerAnswers407(t *testing.T) {
	p := startProxy(t, "127.0.0.1", requireCredential)
	echo := testnet.UDPEcho(t, "127.0.0.1")
	tcpEcho := testnet.TCPEcho(t, "127.0.0.1")

	t.Run("good credential", func(t *testing.T) {
		a := &authorizer{credential: "Test ok"}
		c := p.dial(t, h3.Config{Authorizer: a})
		u, err := c.ListenUDP(testContext(t), echo.String())
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		ping(t, u, "authorized")
		conn, err := c.DialTCP(testContext(t), tcpEcho.String())
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		want := []string{`Test realm="a"`, `Test realm="b"`}
		if len(a.calls) != 4 || a.calls[0] != nil || !slices.Equal(a.calls[1], want) {
			t.Fatalf("Authorize calls = %q, want nil then %q, per tunnel", a.calls, want)
		}
	})
	t.Run("refused credential", func(t *testing.T) {
		c := p.dial(t, h3.Config{Authorizer: &authorizer{credential: "Test wrong"}})
		_, err := c.DialTCP(testContext(t), tcpEcho.String())
		var pe *h3.ProxyError
		if !errors.As(err, &pe) || pe.StatusCode != http.StatusProxyAuthRequired || len(pe.Challenges) != 2 {
			t.Fatalf("err = %v, want a 407 with two challenges", err)
		}
	})
	t.Run("authorizer fails", func(t *testing.T) {
		boom := errors.New("no tokens")
		c := p.dial(t, h3.Config{Authorizer: &authorizer{err: boom}})
		if _, err := c.ListenUDP(testContext(t), echo.String()); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
	})
	t.Run("no authorizer", func(t *testing.T) {
		c := p.dial(t, h3.Config{})
		_, err := c.DialTCP(testContext(t), tcpEcho.String())
		var pe *h3.ProxyError
		if !errors.As(err, &pe) || pe.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("err = %v, want 407", err)
		}
	})
}
