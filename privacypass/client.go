package privacypass

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// AttesterURL is where token requests go, with APIKey as a bearer
	// token. Required.
	AttesterURL string
	APIKey      string
	// DirectoryURL is the issuer directory. When set, a challenge's
	// token-key must be listed there (so a proxy cannot hand this client a
	// key of its own to tag it: RFC 9576 §6.2 key consistency), and a
	// challenge without a token-key takes the directory's. "" trusts the
	// challenge's token-key.
	DirectoryURL string
	// HTTPClient reaches the attester and the directory; nil = a client
	// with a 10-second timeout.
	HTTPClient *http.Client
	// PoolSize is how many tokens are kept minted ahead; 0 = 4; negative =
	// none: a token is minted when a 407 asks for one (for a client that
	// opens one tunnel and exits).
	PoolSize int
	// Prefetch, with DirectoryURL, is the challenge the proxy is expected
	// to send (its Type picks the directory's current key): the pool fills
	// from NewClient on, so that the first tunnel need not wait for a 407.
	// A proxy that sends another challenge is answered as usual.
	Prefetch *TokenChallenge
	// Logger records minting failures, never tokens; nil = silent.
	Logger *slog.Logger
}

// Client mints tokens through an attester and presents them to a proxy. It
// keeps a pool of tokens for the proxy's challenge, refilled in the
// background, so that most tunnels need no issuance round trip. Its
// Authorize method is the tunnel clients' Authorizer. Close stops the
// refill. It is safe for concurrent use.
type Client struct {
	cfg     ClientConfig
	ownHTTP bool            // cfg.HTTPClient is ours, to close at Close
	ctx     context.Context // ends at Close; bounds background minting
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the refill goroutine
	wake    chan struct{}  // asks the refill goroutine to top up; capacity 1

	mu      sync.Mutex
	pool    *tokenPool // for the last challenge answered; guarded by mu
	dir     *Directory // guarded by mu
	started bool       // the refill goroutine runs; guarded by mu
	closed  bool       // guarded by mu
}

// tokenPool holds tokens for one challenge and key.
type tokenPool struct {
	challenge []byte
	key       *PublicKey
	tokens    [][]byte // encoded tokens, each presented once
}

// NewClient returns a Client for c.
func NewClient(c ClientConfig) (*Client, error) {
	if c.AttesterURL == "" {
		return nil, errors.New("privacypass: a client needs AttesterURL")
	}
	own := c.HTTPClient == nil
	if own {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.PoolSize == 0 {
		c.PoolSize = 4
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Prefetch != nil && (c.DirectoryURL == "" || c.PoolSize < 0) {
		return nil, errors.New("privacypass: Prefetch needs DirectoryURL and a pool")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cl := &Client{cfg: c, ownHTTP: own, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
	if c.Prefetch != nil {
		cl.refill()
	}
	return cl, nil
}

// Close stops background minting and waits for it. Tokens in the pool are
// dropped.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.pool = nil
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if c.ownHTTP {
		c.cfg.HTTPClient.CloseIdleConnections()
	}
	return nil
}

// ErrNoUsableChallenge means a 407 offered no challenge this client can answer.
var ErrNoUsableChallenge = errors.New("privacypass: no usable PrivateToken challenge")

// Authorize returns a Proxy-Authorization value for the next tunnel
// request. challenges are the Proxy-Authenticate values of the 407 that
// answered the previous attempt, or nil before the first: then a pooled
// token for the challenge last seen is presented, or "" if there is none
// yet. After a 407 the first usable challenge (type 2 or 1, key listed in
// the directory) is answered, from the pool if it is for that challenge,
// else by minting now.
func (c *Client) Authorize(ctx context.Context, challenges []string) (string, error) {
	if challenges == nil {
		c.mu.Lock()
		tok := c.takeLocked()
		c.mu.Unlock()
		if tok == nil {
			return "", nil
		}
		return FormatCredentials(tok), nil
	}
	ch, key, err := c.choose(ctx, challenges)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", net.ErrClosed
	}
	if c.pool == nil || !bytes.Equal(c.pool.challenge, ch.Raw) || c.pool.key.ID() != key.ID() {
		c.pool = &tokenPool{challenge: ch.Raw, key: key}
	}
	p := c.pool
	tok := c.takeLocked()
	c.mu.Unlock()
	if tok == nil {
		if tok, err = c.mint(ctx, p); err != nil {
			return "", err
		}
		c.refill()
	}
	return FormatCredentials(tok), nil
}

// takeLocked pops a pooled token, if any, and asks for a refill.
func (c *Client) takeLocked() []byte {
	if c.pool == nil || len(c.pool.tokens) == 0 {
		return nil
	}
	tok := c.pool.tokens[0]
	c.pool.tokens = c.pool.tokens[1:]
	c.refillLocked()
	return tok
}

func (c *Client) refill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refillLocked()
}

// refillLocked wakes the refill goroutine, starting it on first use.
func (c *Client) refillLocked() {
	if c.closed || c.cfg.PoolSize < 0 {
		return
	}
	if !c.started {
		c.started = true
		c.wg.Add(1)
		go c.refillLoop()
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// refillLoop tops the pool up to PoolSize whenever woken, until Close.
// After a failure it waits for the next wake-up.
func (c *Client) refillLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		}
		if err := c.prefetchPool(); err != nil {
			if c.ctx.Err() == nil {
				c.cfg.Logger.Warn("prefetching tokens", "error", err)
			}
			continue
		}
		for {
			c.mu.Lock()
			p := c.pool
			full := p == nil || len(p.tokens) >= c.cfg.PoolSize
			c.mu.Unlock()
			if full {
				break
			}
			tok, err := c.mint(c.ctx, p)
			if err != nil {
				if c.ctx.Err() == nil {
					c.cfg.Logger.Warn("minting a token failed", "error", err)
				}
				break
			}
			c.mu.Lock()
			if c.pool == p {
				p.tokens = append(p.tokens, tok)
			}
			c.mu.Unlock()
		}
	}
}

// prefetchPool makes the pool for the Prefetch challenge if there is no pool
// yet.
func (c *Client) prefetchPool() error {
	c.mu.Lock()
	have := c.pool != nil
	c.mu.Unlock()
	if have || c.cfg.Prefetch == nil {
		return nil
	}
	raw, err := c.cfg.Prefetch.MarshalBinary()
	if err != nil {
		return err
	}
	key, err := c.listed(c.ctx, c.cfg.Prefetch.Type, nil)
	if err != nil {
		return err
	}
	if key == nil {
		return fmt.Errorf("the issuer directory has no current key of type %v", c.cfg.Prefetch.Type)
	}
	c.mu.Lock()
	if c.pool == nil && !c.closed {
		c.pool = &tokenPool{challenge: raw, key: key}
	}
	c.mu.Unlock()
	return nil
}

// choose picks the first challenge this client can answer, with its key.
func (c *Client) choose(ctx context.Context, values []string) (Challenge, *PublicKey, error) {
	for _, ch := range ParseChallenges(values) {
		t := ch.TokenChallenge.Type
		if authenticatorLen(t) == 0 {
			continue // greased or unknown
		}
		var key *PublicKey
		if ch.TokenKey != nil {
			k, err := ParsePublicKey(t, ch.TokenKey)
			if err != nil {
				continue
			}
			key = k
		}
		if c.cfg.DirectoryURL != "" {
			listed, err := c.listed(ctx, t, key)
			if err != nil {
				return Challenge{}, nil, err
			}
			if listed == nil {
				c.cfg.Logger.Warn("a challenge's token key is not in the issuer directory; ignoring it", "type", t.String())
				continue
			}
			key = listed
		}
		if key != nil {
			return ch, key, nil
		}
	}
	return Challenge{}, nil, ErrNoUsableChallenge
}

// listed returns the directory's entry for key, or its current key of type t
// when key is nil, or nil. The directory is fetched when not yet known and
// again when key is not in it, in case the issuer rotated.
func (c *Client) listed(ctx context.Context, t TokenType, key *PublicKey) (*PublicKey, error) {
	find := func(d *Directory) *PublicKey {
		if d == nil {
			return nil
		}
		if key == nil {
			return d.Current(t, time.Now())
		}
		for _, k := range d.Keys {
			if k.Type == t && k.ID() == key.ID() {
				return k
			}
		}
		return nil
	}
	c.mu.Lock()
	k := find(c.dir)
	c.mu.Unlock()
	if k != nil {
		return k, nil
	}
	d, err := FetchDirectory(ctx, c.cfg.HTTPClient, c.cfg.DirectoryURL)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.dir = d
	c.mu.Unlock()
	return find(d), nil
}

// FetchDirectory gets and parses the issuer directory at url, as a client
// or a proxy that checks tokens with the issuer's keys does.
func FetchDirectory(ctx context.Context, client *http.Client, url string) (*Directory, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", MediaTypeDirectory)
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the issuer directory: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the issuer directory: %s", res.Status)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetching the issuer directory: %w", err)
	}
	return ParseDirectory(b)
}

// mint gets one token for p through the attester.
func (c *Client) mint(ctx context.Context, p *tokenPool) ([]byte, error) {
	pending, err := p.key.NewPendingToken(p.challenge, nil)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.AttesterURL, bytes.NewReader(pending.Request))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", MediaTypeRequest)
	req.Header.Set("Accept", MediaTypeResponse)
	req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	res, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("requesting a token: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, MaxTokenRequestBytes))
	if err != nil {
		return nil, fmt.Errorf("requesting a token: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, &MintError{StatusCode: res.StatusCode, RetryAfter: res.Header.Get("Retry-After")}
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != MediaTypeResponse {
		return nil, fmt.Errorf("requesting a token: answered Content-Type %q", res.Header.Get("Content-Type"))
	}
	tok, err := pending.Finalize(body)
	if err != nil {
		return nil, err
	}
	return tok.MarshalBinary()
}

// MintError is an attester's refusal to mint a token: 401 for an unknown
// API key, 429 past the account's rate (RetryAfter says when to retry).
type MintError struct {
	StatusCode int
	RetryAfter string
}

func (e *MintError) Error() string {
	s := fmt.Sprintf("privacypass: the attester refused a token: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.RetryAfter != "" {
		s += " (retry after " + e.RetryAfter + "s)"
	}
	return s
}

// Pooled returns how many tokens c holds ready for the next tunnels, 0
// without a pool (ClientConfig.PoolSize).
func (c *Client) Pooled() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pool == nil {
		return 0
	}
	return len(c.pool.tokens)
}

// ReadAPIKey reads an API key file: the first line that is not blank or a
// # comment.
func ReadAPIKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", fmt.Errorf("%s holds no API key", path)
}
