package load

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/masqued/masqued/client/proxyconn"
)

// counter mints numbered credentials for the challenges it is given, and
// fails from the failAt-th on (0: never). The real minting (privacypass) is
// tested in cmd/masque-load against a proxy and its attester.
type counter struct {
	n      atomic.Int64
	failAt int64
}

func (c *counter) Authorize(_ context.Context, challenges []string) (string, error) {
	i := c.n.Add(1)
	if c.failAt > 0 && i >= c.failAt {
		return "", errors.New("attester says no")
	}
	return challenges[0] + " " + strconv.FormatInt(i, 10), nil
}

func TestTokens(t *testing.T) {
	tokens, err := MintTokens(t.Context(), &counter{}, []string{"PrivateToken"}, 100, 8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 100 {
		cred, err := tokens.Authorize(t.Context(), nil)
		if err != nil || seen[cred] {
			t.Fatalf("%q, %v: want a fresh credential", cred, err)
		}
		seen[cred] = true
	}
	if _, err := tokens.Authorize(t.Context(), []string{"PrivateToken"}); !errors.Is(err, ErrTokensUsedUp) {
		t.Errorf("101st token: %v", err)
	}
	// proxyconn wraps an Authorizer's failure: it counts as auth.
	if c := Class(&proxyconn.AuthError{Err: ErrTokensUsedUp}); c != "auth" {
		t.Errorf("class %q", c)
	}
}

func TestMintTokensFails(t *testing.T) {
	if _, err := MintTokens(t.Context(), &counter{failAt: 30}, []string{"PrivateToken"}, 100, 8); err == nil {
		t.Fatal("no error from a failing minter")
	}
}
