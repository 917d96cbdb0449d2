package ppserver

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/masqued/masqued/privacypass"
	"github.com/prometheus/client_golang/prometheus"
)

// KeySource supplies the issuer keys a Redeemer accepts tokens under.
type KeySource interface {
	// VerificationKeys returns the live keys, preferred first. It is called
	// on every redemption, so it must be cheap (return a cached slice, not a
	// copy) and safe for concurrent use; callers do not modify the slice.
	VerificationKeys() []privacypass.Verifier
}

// StaticKeys is a fixed KeySource.
type StaticKeys []privacypass.Verifier

// VerificationKeys returns k.
func (k StaticKeys) VerificationKeys() []privacypass.Verifier { return k }

// RedeemerConfig configures a Redeemer.
type RedeemerConfig struct {
	// IssuerName is issuer_name in the challenges: the host[:port] whose
	// /.well-known/private-token-issuer-directory lists Keys. Required.
	IssuerName string
	// OriginInfo is origin_info in the challenges, the proxy's name; ""
	// accepts tokens minted for any origin that names this issuer.
	OriginInfo string
	// RedemptionContext is empty (the default: tokens can be minted ahead
	// and pooled) or 32 bytes binding tokens to this deployment.
	RedemptionContext []byte
	// Keys are the issuer's live keys. A type-1 key must be the issuer's
	// *PrivateKey, since only the issuer can check those tokens. Required.
	Keys KeySource
	// Spent remembers redeemed nonces; nil = a new MemoryStore. Share a
	// RedisStore between proxies so a token spent on one is refused by all.
	Spent SpentStore
	// SpentTTL is how long a nonce stays spent when its key's retirement
	// (PublicKey.NotAfter) is unknown, as with keys from a directory; 0 =
	// 31 days, the default issuer's key lifetime plus overlap. It must be at
	// least the issuer's, or a token could be replayed late in a key's life.
	SpentTTL time.Duration
	// Logger records refusals, never tokens; nil = silent.
	Logger *slog.Logger
	// Registerer gets masqued_privacypass_redemptions_total{result}; nil =
	// not counted.
	Registerer prometheus.Registerer
}

// Redemption results, the label values of masqued_privacypass_redemptions_total.
const (
	ResultAdmitted     = "admitted"
	ResultNoToken      = "no_token"
	ResultInvalid      = "invalid"       // malformed, forged, another challenge, unknown key
	ResultSpent        = "spent"         // replayed
	ResultStoreFailure = "store_failure" // the spent store did not answer: refused with 503
)

// Redeemer is the proxy's side of Privacy Pass: a tunnel authenticator
// (Authenticate(*http.Request) error) that admits a request carrying a
// valid, unspent token in Proxy-Authorization and refuses any other with
// 407 and Proxy-Authenticate challenges. Whether a token buys one tunnel or
// one connection is the proxy's choice (tunnel.Config.AuthPerConn). It is
// safe for concurrent use.
type Redeemer struct {
	cfg        RedeemerConfig
	challenges map[privacypass.TokenType]challengeInfo
	results    map[string]prometheus.Counter // by result; nil when not counted
}

type challengeInfo struct {
	raw    []byte
	digest [32]byte
}

// NewRedeemer returns a Redeemer for c.
func NewRedeemer(c RedeemerConfig) (*Redeemer, error) {
	if c.IssuerName == "" || c.Keys == nil {
		return nil, errors.New("privacypass: a redeemer needs IssuerName and Keys")
	}
	if c.Spent == nil {
		c.Spent = NewMemoryStore()
	}
	if c.SpentTTL == 0 {
		c.SpentTTL = 31 * 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	rd := &Redeemer{cfg: c, challenges: map[privacypass.TokenType]challengeInfo{}}
	if c.Registerer != nil {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_privacypass_redemptions_total", Help: "Tunnel requests checked for a Privacy Pass token, by result.",
		}, []string{"result"})
		if err := c.Registerer.Register(vec); err != nil {
			return nil, err
		}
		rd.results = map[string]prometheus.Counter{}
		for _, r := range []string{ResultAdmitted, ResultNoToken, ResultInvalid, ResultSpent, ResultStoreFailure} {
			rd.results[r] = vec.WithLabelValues(r)
		}
	}
	for _, t := range []privacypass.TokenType{privacypass.TypePrivate, privacypass.TypePublic} {
		tc := privacypass.TokenChallenge{Type: t, IssuerName: c.IssuerName, RedemptionContext: c.RedemptionContext, OriginInfo: c.OriginInfo}
		raw, err := tc.MarshalBinary()
		if err != nil {
			return nil, err
		}
		rd.challenges[t] = challengeInfo{raw: raw, digest: sha256.Sum256(raw)}
	}
	return rd, nil
}

// Refusal is a Redeemer's answer to a request it does not admit. Its
// HTTPStatus and Header methods tell the proxy front what to answer.
type Refusal struct {
	Status int    // 407, or 503 when the spent store failed
	Reason string // why, a Result* constant; never the token
	header http.Header
	err    error
}

func (e *Refusal) Error() string {
	if e.err != nil {
		return "privacypass: " + e.Reason + ": " + e.err.Error()
	}
	return "privacypass: " + e.Reason
}

// Unwrap returns the cause.
func (e *Refusal) Unwrap() error { return e.err }

// HTTPStatus is the status to answer with.
func (e *Refusal) HTTPStatus() int { return e.Status }

// Header holds the Proxy-Authenticate challenges of a 407.
func (e *Refusal) Header() http.Header { return e.header }

// Authenticate admits r if its Proxy-Authorization holds a valid token for
// one of this proxy's challenges that has not been spent, and spends it.
func (rd *Redeemer) Authenticate(r *http.Request) error {
	keys := rd.cfg.Keys.VerificationKeys()
	tok, key, err := rd.check(r, keys)
	if err != nil {
		return rd.refuse(keys, ResultInvalid, err)
	}
	if tok == nil {
		return rd.refuse(keys, ResultNoToken, nil)
	}
	expiry := key.Public().NotAfter
	if expiry.IsZero() {
		expiry = time.Now().Add(rd.cfg.SpentTTL)
	}
	fresh, err := rd.cfg.Spent.Spend(r.Context(), tok.KeyID, tok.Nonce, expiry)
	if err != nil {
		rd.count(ResultStoreFailure)
		rd.cfg.Logger.Warn("spent-token store failed; refusing", "error", err)
		return &Refusal{Status: http.StatusServiceUnavailable, Reason: ResultStoreFailure, err: err}
	}
	if !fresh {
		return rd.refuse(keys, ResultSpent, nil)
	}
	rd.count(ResultAdmitted)
	return nil
}

func (rd *Redeemer) count(result string) {
	if rd.results != nil {
		rd.results[result].Inc()
	}
}

// check finds, parses and verifies the token of r. It returns a nil token
// and nil error when r carries none.
func (rd *Redeemer) check(r *http.Request, keys []privacypass.Verifier) (*privacypass.Token, privacypass.Verifier, error) {
	var raw []byte
	for _, v := range r.Header.Values("Proxy-Authorization") {
		var err error
		if raw, err = privacypass.ParseCredentials(v); err == nil {
			break
		} else if !errors.Is(err, privacypass.ErrNoCredentials) {
			return nil, nil, err
		}
	}
	if raw == nil {
		return nil, nil, nil
	}
	tok := new(privacypass.Token)
	if err := tok.UnmarshalBinary(raw); err != nil {
		return nil, nil, err
	}
	if ci, ok := rd.challenges[tok.Type]; !ok || ci.digest != tok.ChallengeDigest {
		return nil, nil, fmt.Errorf("%w: minted for another challenge", privacypass.ErrInvalidToken)
	}
	i := slices.IndexFunc(keys, func(k privacypass.Verifier) bool { return k.Public().ID() == tok.KeyID })
	if i < 0 {
		return nil, nil, fmt.Errorf("%w: unknown or retired key", privacypass.ErrInvalidToken)
	}
	if err := keys[i].Verify(tok); err != nil {
		return nil, nil, err
	}
	return tok, keys[i], nil
}

// refuse builds a 407 with a challenge for the preferred usable key of each
// token type, type 2 first (anyone can verify it, so clients should prefer it).
func (rd *Redeemer) refuse(keys []privacypass.Verifier, reason string, err error) *Refusal {
	rd.count(reason)
	rd.cfg.Logger.Debug("token refused", "reason", reason)
	h := http.Header{}
	now := time.Now()
	for _, t := range []privacypass.TokenType{privacypass.TypePublic, privacypass.TypePrivate} {
		i := slices.IndexFunc(keys, func(k privacypass.Verifier) bool {
			pk := k.Public()
			return pk.Type == t && !pk.NotBefore.After(now) && verifiable(k)
		})
		if i < 0 {
			continue
		}
		c := privacypass.Challenge{Raw: rd.challenges[t].raw, TokenKey: keys[i].Public().Encoded(), MaxAge: -1}
		h.Add("Proxy-Authenticate", c.String())
	}
	return &Refusal{Status: http.StatusProxyAuthRequired, Reason: reason, header: h, err: err}
}

// verifiable reports whether k can check tokens: type 1 needs the private key.
func verifiable(k privacypass.Verifier) bool {
	_, private := k.(*privacypass.PrivateKey)
	return private || k.Public().Type == privacypass.TypePublic
}
