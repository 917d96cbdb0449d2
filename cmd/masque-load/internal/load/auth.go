package load

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/masque"
)

// StaticAuthorization is a masque.Authorizer that sends the same
// Proxy-Authorization value with every tunnel request, such as a Basic
// credential.
type StaticAuthorization string

// Authorize returns the value; after a 407 too, as it has no other.
func (a StaticAuthorization) Authorize(context.Context, []string) (string, error) {
	return string(a), nil
}

// ErrTokensUsedUp is a tunnel request's failure once every pre-minted token
// has been presented. It counts under "auth".
var ErrTokensUsedUp = errors.New("the pre-minted tokens are used up: mint more")

// Tokens is a pool of credentials minted before the run, each presented
// once, so that the run measures the proxy's redemption and not the
// issuance. It is a masque.Authorizer and safe for concurrent use.
type Tokens struct {
	mu    sync.Mutex
	creds []string // guarded by mu
}

// MintTokens has a mint n credentials for the proxy's challenges (the
// Proxy-Authenticate values of its 407), parallel at a time. a is a
// Privacy Pass client, say, that mints a token on every call.
func MintTokens(ctx context.Context, a masque.Authorizer, challenges []string, n, parallel int) (*Tokens, error) {
	t := &Tokens{creds: make([]string, 0, n)}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for range next {
				cred, err := a.Authorize(ctx, challenges)
				if err != nil {
					cancel(err)
					return
				}
				t.mu.Lock()
				t.creds = append(t.creds, cred)
				t.mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("minting tokens: %w", err)
	}
	return t, nil
}

// Authorize presents the next token, before a 407 and after one.
func (t *Tokens) Authorize(context.Context, []string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.creds) == 0 {
		return "", ErrTokensUsedUp
	}
	cred := t.creds[len(t.creds)-1]
	t.creds = t.creds[:len(t.creds)-1]
	return cred, nil
}

// Left is how many tokens have not been presented.
func (t *Tokens) Left() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.creds)
}

// Challenges opens a tunnel to target without credentials and returns the
// challenges of the proxy's 407, or nil if the proxy admitted it.
func Challenges(ctx context.Context, c Conn, target string) ([]string, error) {
	conn, err := c.DialTCP(ctx, target)
	if err == nil {
		return nil, conn.Close()
	}
	var pe *proxyconn.ProxyError
	if errors.As(err, &pe) && pe.StatusCode == 407 && len(pe.Challenges) > 0 {
		return pe.Challenges, nil
	}
	return nil, fmt.Errorf("asking the proxy for its challenge: %w", err)
}
