// Package auth holds masqued's built-in authenticators besides Privacy Pass:
// static credentials (Bearer tokens, Basic user and password) checked
// against hashes in a file, a per-credential rate limit, and Chain, which
// lets several authenticators guard one proxy.
//
// Every authenticator here satisfies tunnel.Authenticator, a one-method
// interface on *http.Request. To add your own, write a type with
//
//	Authenticate(r *http.Request) error
//
// that returns nil to admit r, or an error with HTTPStatus() int (407, 403,
// 429, …) and, for a 407, Header() http.Header holding Proxy-Authenticate;
// then name it in cmd/masqued's -auth switch (auth.go there). Authenticate
// runs for every tunnel request (once per connection with
// -auth-per-connection) on many goroutines at once, and must neither keep
// the request nor log credentials.
package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/time/rate"
)

// Refusal is an authenticator's answer to a request it does not admit.
type Refusal struct {
	Status int         // 407, 403 or 429
	Reason string      // for logs and the error text; never a credential
	header http.Header // Proxy-Authenticate for a 407
}

func (e *Refusal) Error() string       { return "auth: " + e.Reason }
func (e *Refusal) HTTPStatus() int     { return e.Status }
func (e *Refusal) Header() http.Header { return e.header }
func challenge(h, reason string) error {
	return &Refusal{http.StatusProxyAuthRequired, reason, http.Header{"Proxy-Authenticate": {h}}}
}

// Scheme is a static credential's HTTP authentication scheme.
type Scheme string

const (
	Bearer Scheme = "Bearer" // Proxy-Authorization: Bearer TOKEN (RFC 6750 syntax)
	Basic  Scheme = "Basic"  // Proxy-Authorization: Basic base64(user:password) (RFC 7617)
)

// Static admits requests whose Proxy-Authorization holds one of a fixed set
// of credentials. It keeps only SHA-256 hashes of the secrets, compares them
// in constant time, and never logs one. The secrets must be random (such as
// `openssl rand -hex 32`), not passwords a person chose: a fast hash is what
// lets every tunnel request be checked without a cache.
type Static struct {
	scheme Scheme
	realm  string
	users  map[string][sha256.Size]byte // name → SHA-256 of the secret
	limit  rate.Limit
	burst  int

	mu       sync.Mutex               // guards limiters
	limiters map[string]*rate.Limiter // by credential name; at most one per file entry
}

// StaticConfig configures a Static authenticator.
type StaticConfig struct {
	Scheme Scheme
	// Realm is named in the challenge; "" = "masqued".
	Realm string
	// File holds one credential per line, "NAME SHA256HEX", where NAME is
	// the Basic user name (or a label for a Bearer token) and SHA256HEX the
	// hex SHA-256 of the secret (`printf %s SECRET | sha256sum`). Blank
	// lines and lines starting with # are skipped.
	File string
	// Rate is the tunnels each credential may open per second, with Burst
	// at once; 0 = unlimited.
	Rate  float64
	Burst int
}

// NewStatic reads c.File and returns the authenticator.
func NewStatic(c StaticConfig) (*Static, error) {
	if c.Scheme != Bearer && c.Scheme != Basic {
		return nil, fmt.Errorf("auth: unknown scheme %q", c.Scheme)
	}
	users, err := readCredentials(c.File)
	if err != nil {
		return nil, err
	}
	s := &Static{scheme: c.Scheme, realm: c.Realm, users: users, limit: rate.Inf, limiters: map[string]*rate.Limiter{}}
	if s.realm == "" {
		s.realm = "masqued"
	}
	if c.Rate > 0 {
		s.limit, s.burst = rate.Limit(c.Rate), max(c.Burst, 1)
	}
	return s, nil
}

func readCredentials(path string) (map[string][sha256.Size]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth credentials: %w", err)
	}
	defer f.Close()
	users := map[string][sha256.Size]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		var sum [sha256.Size]byte
		if len(fields) != 2 || hex.DecodedLen(len(fields[1])) != len(sum) {
			return nil, fmt.Errorf("auth credentials %s:%d: want NAME SHA256HEX", path, n)
		}
		if _, err := hex.Decode(sum[:], []byte(fields[1])); err != nil {
			return nil, fmt.Errorf("auth credentials %s:%d: the hash is not hex", path, n)
		}
		if _, dup := users[fields[0]]; dup {
			return nil, fmt.Errorf("auth credentials %s:%d: %q is given twice", path, n, fields[0])
		}
		users[fields[0]] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth credentials: %w", err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("auth credentials %s: no credentials", path)
	}
	return users, nil
}

// Authenticate admits r if it carries a known credential of s's scheme
// whose rate is not used up.
func (s *Static) Authenticate(r *http.Request) error {
	chal := string(s.scheme) + ` realm="` + s.realm + `"`
	for _, v := range r.Header.Values("Proxy-Authorization") {
		scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
		if !ok || !strings.EqualFold(scheme, string(s.scheme)) {
			continue
		}
		name, ok := s.check(strings.TrimSpace(cred))
		if !ok {
			return challenge(chal, "unknown "+string(s.scheme)+" credentials")
		}
		if !s.allow(name) {
			return &Refusal{Status: http.StatusTooManyRequests, Reason: "the credential's tunnel rate is used up"}
		}
		return nil
	}
	return challenge(chal, "no "+string(s.scheme)+" credentials")
}

// check returns the name of the credential cred, in constant time with
// respect to the secrets.
func (s *Static) check(cred string) (string, bool) {
	if s.scheme == Basic {
		b, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return "", false
		}
		user, pass, ok := strings.Cut(string(b), ":")
		want, known := s.users[user]
		got := sha256.Sum256([]byte(pass))
		match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
		return user, ok && known && match
	}
	got := sha256.Sum256([]byte(cred))
	var name string
	found := 0
	for n, want := range s.users { // every entry, so timing tells nothing
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			name, found = n, 1
		}
	}
	return name, found == 1
}

// allow takes one tunnel from name's rate.
func (s *Static) allow(name string) bool {
	if s.limit == rate.Inf {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limiters[name]
	if l == nil {
		l = rate.NewLimiter(s.limit, s.burst)
		s.limiters[name] = l
	}
	return l.Allow()
}

// Authenticator is tunnel.Authenticator, repeated so that this package need
// not import the core.
type Authenticator interface {
	Authenticate(r *http.Request) error
}

// Chain admits a request that any of its authenticators admits, asking
// them in order and stopping at the first that admits. A 407 means "no
// credentials of mine here" and passes the request to the next; any other
// refusal (403, 429: the credentials were recognised and refused) is the
// answer at once. If every authenticator asks for credentials, the answer
// is one 407 carrying all their challenges, so the client can pick a scheme
// it has. An empty Chain admits everything.
type Chain []Authenticator

// Authenticate implements tunnel.Authenticator.
func (c Chain) Authenticate(r *http.Request) error {
	var challenges []string
	var last error
	for _, a := range c {
		err := a.Authenticate(r)
		if err == nil {
			return nil
		}
		var hs interface{ HTTPStatus() int }
		if !errors.As(err, &hs) || hs.HTTPStatus() != http.StatusProxyAuthRequired {
			return err
		}
		last = err
		var hh interface{ Header() http.Header }
		if errors.As(err, &hh) {
			challenges = append(challenges, hh.Header().Values("Proxy-Authenticate")...)
		}
	}
	if last == nil {
		return nil
	}
	if len(c) == 1 {
		return last
	}
	return &Refusal{Status: http.StatusProxyAuthRequired, Reason: "no credentials that any authenticator accepts",
		header: http.Header{"Proxy-Authenticate": challenges}}
}
