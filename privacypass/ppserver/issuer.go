// Package ppserver is the server side of Privacy Pass (package privacypass):
// the Issuer and Attester HTTP handlers, the proxy's redemption (Redeemer, a
// tunnel authenticator) with its spent-nonce stores in memory or Redis, and
// the deployments that wire them together.
//
// A token admits one tunnel by default. A proxy may instead let it admit its
// connection (tunnel.Config.AuthPerConn): that spends fewer tokens and loses
// no privacy, since the proxy links the tunnels of one connection anyway, but
// one token then buys any number of tunnels for as long as the client keeps
// the connection open, which weakens the attester's rate limit.
//
// Deployments: an Issuer and an Attester in one process with the proxy
// (StartProxyAuth without an issuer directory: masqued's quick start), or
// apart (cmd/pp-issuer), the proxy following the issuer's directory
// (DirectoryKeys) and sharing spent tokens with its fleet through Redis.
//
// Nothing here logs a token, a nonce, an API key or an account id.
package ppserver

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqued/masqued/privacypass"
	"github.com/prometheus/client_golang/prometheus"
)

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	// Dir is where keys are kept (created 0700, files 0600); "" keeps them
	// in memory only, so they die with the process.
	Dir string
	// Types are the token types issued; nil = both.
	Types []privacypass.TokenType
	// Lifetime is how long each key is used for issuance; 0 = 30 days.
	Lifetime time.Duration
	// Overlap is how long a successor key is published before it is used,
	// and how long a key still redeems after its successor took over; 0 =
	// one day. It must be shorter than Lifetime.
	Overlap time.Duration
	// RequestURI is the directory's issuer-request-uri, absolute or
	// relative to the directory; "" = DefaultRequestPath.
	RequestURI string
	// Logger records key rotation, never requests; nil = silent.
	Logger *slog.Logger
	// Registerer gets masqued_privacypass_issuance_total{result}: issued,
	// bad_request, unknown_key or failed. nil = not counted.
	Registerer prometheus.Registerer
}

// Issuer mints tokens: it serves the issuer directory and the issuance
// endpoint of RFC 9578, rotates its keys, and, for a proxy in the same
// process, is the KeySource of its keys. It never learns who asks: requests
// reach it through an attester. It is safe for concurrent use.
type Issuer struct {
	cfg   IssuerConfig
	state atomic.Pointer[issuerState]
	// issued counts issuance requests by result; nil when not counted.
	issued *prometheus.CounterVec

	rotateMu sync.Mutex // serialises Rotate
}

// issuerState is an immutable snapshot of the live keys.
type issuerState struct {
	keys      []*privacypass.PrivateKey // newest NotBefore first
	verifiers []privacypass.Verifier    // the same keys
	directory []byte                    // JSON
	maxAge    int                       // directory Cache-Control max-age, seconds
}

// NewIssuer loads the keys in c.Dir and rotates them to now.
func NewIssuer(c IssuerConfig) (*Issuer, error) {
	if c.Types == nil {
		c.Types = []privacypass.TokenType{privacypass.TypePublic, privacypass.TypePrivate}
	}
	if c.Lifetime == 0 {
		c.Lifetime = 30 * 24 * time.Hour
	}
	if c.Overlap == 0 {
		c.Overlap = 24 * time.Hour
	}
	if c.Overlap >= c.Lifetime {
		return nil, errors.New("privacypass: the key overlap must be shorter than the key lifetime")
	}
	if c.RequestURI == "" {
		c.RequestURI = privacypass.DefaultRequestPath
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	is := &Issuer{cfg: c}
	if c.Registerer != nil {
		is.issued = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_privacypass_issuance_total", Help: "Token requests answered by the issuer, by result.",
		}, []string{"result"})
		if err := c.Registerer.Register(is.issued); err != nil {
			return nil, err
		}
		for _, r := range []string{"issued", "bad_request", "unknown_key", "failed"} {
			is.issued.WithLabelValues(r)
		}
	}
	var keys []*privacypass.PrivateKey
	if c.Dir != "" {
		if err := os.MkdirAll(c.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("issuer key directory: %w", err)
		}
		var err error
		if keys, err = loadKeys(c.Dir); err != nil {
			return nil, err
		}
	}
	is.publish(keys)
	return is, is.Rotate(time.Now())
}

func loadKeys(dir string) ([]*privacypass.PrivateKey, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		return nil, err
	}
	var keys []*privacypass.PrivateKey
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		k, err := privacypass.ParsePrivateKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keyFile is where k is kept in dir.
func keyFile(dir string, k *privacypass.PrivateKey) string {
	id := k.Public().ID()
	return filepath.Join(dir, fmt.Sprintf("type%d-%d-%s.pem", k.Public().Type, k.Public().NotBefore.Unix(), hex.EncodeToString(id[:4])))
}

// Rotate retires keys past their NotAfter and makes keys so that each type
// has one in use at now and, within Overlap of its end, a published
// successor. The cmd calls it periodically (hourly is plenty).
func (is *Issuer) Rotate(now time.Time) error {
	is.rotateMu.Lock()
	defer is.rotateMu.Unlock()
	c := is.cfg
	keys := slices.DeleteFunc(slices.Clone(is.state.Load().keys), func(k *privacypass.PrivateKey) bool {
		if now.Before(k.Public().NotAfter) {
			return false
		}
		if c.Dir != "" {
			if err := os.Remove(keyFile(c.Dir, k)); err != nil && !errors.Is(err, os.ErrNotExist) {
				c.Logger.Warn("removing a retired issuer key", "error", err)
			}
		}
		c.Logger.Info("issuer key retired", "type", k.Public().Type.String())
		return true
	})
	for _, t := range c.Types {
		var newest *privacypass.PrivateKey
		for _, k := range keys {
			if k.Public().Type == t && (newest == nil || k.Public().NotBefore.After(newest.Public().NotBefore)) {
				newest = k
			}
		}
		start := now
		if newest != nil {
			end := newest.Public().NotBefore.Add(c.Lifetime)
			if now.Before(end.Add(-c.Overlap)) {
				continue // in use, and not yet time to publish its successor
			}
			start = later(now, end)
		}
		k, err := is.generate(t, start, keys)
		if err != nil {
			return err
		}
		keys = append(keys, k)
		c.Logger.Info("issuer key made", "type", t.String(), "not_before", start.UTC().Format(time.RFC3339))
	}
	is.publish(keys)
	return nil
}

// Run calls Rotate every hour until ctx is done.
func (is *Issuer) Run(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := is.Rotate(now); err != nil {
				is.cfg.Logger.Error("rotating issuer keys", "error", err)
			}
		}
	}
}

// generate makes a key of type t from start whose truncated id differs from
// those of the other live keys of its type (RFC 9578 §5.5), and stores it.
func (is *Issuer) generate(t privacypass.TokenType, start time.Time, live []*privacypass.PrivateKey) (*privacypass.PrivateKey, error) {
	start = start.Truncate(time.Second)
	for range 64 {
		k, err := privacypass.GenerateKey(t, start, start.Add(is.cfg.Lifetime+is.cfg.Overlap))
		if err != nil {
			return nil, err
		}
		id := k.Public().ID()
		if slices.ContainsFunc(live, func(o *privacypass.PrivateKey) bool {
			oid := o.Public().ID()
			return o.Public().Type == t && oid[privacypass.KeyIDLen-1] == id[privacypass.KeyIDLen-1]
		}) {
			continue
		}
		if is.cfg.Dir != "" {
			if err := writeKey(is.cfg.Dir, k); err != nil {
				return nil, err
			}
		}
		return k, nil
	}
	return nil, errors.New("privacypass: no key with a free truncated key id")
}

// writeKey stores k in dir atomically, readable by the owner only.
func writeKey(dir string, k *privacypass.PrivateKey) error {
	b, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return fmt.Errorf("writing an issuer key: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("writing an issuer key: %w", err)
	}
	// CreateTemp makes the file 0600.
	return os.Rename(f.Name(), keyFile(dir, k))
}

// publish makes keys the live set.
func (is *Issuer) publish(keys []*privacypass.PrivateKey) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b *privacypass.PrivateKey) int { // newest first; type 2 first among equals
		if c := b.Public().NotBefore.Compare(a.Public().NotBefore); c != 0 {
			return c
		}
		return int(b.Public().Type) - int(a.Public().Type)
	})
	st := &issuerState{keys: keys, maxAge: int(min(time.Hour, is.cfg.Overlap/2) / time.Second)}
	dir := &privacypass.Directory{RequestURI: is.cfg.RequestURI}
	for _, k := range keys {
		st.verifiers = append(st.verifiers, k)
		dir.Keys = append(dir.Keys, k.Public())
	}
	st.directory, _ = json.Marshal(dir) // cannot fail: strings and numbers
	is.state.Store(st)
}

// VerificationKeys returns the live keys, newest first (a KeySource).
func (is *Issuer) VerificationKeys() []privacypass.Verifier { return is.state.Load().verifiers }

// ServeHTTP serves the directory at DirectoryPath and issuance at the path
// of RequestURI.
func (is *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case privacypass.DirectoryPath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		st := is.state.Load()
		w.Header().Set("Content-Type", privacypass.MediaTypeDirectory)
		w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(st.maxAge))
		w.Write(st.directory)
	case requestPath(is.cfg.RequestURI):
		is.serveIssue(w, r)
	default:
		http.NotFound(w, r)
	}
}

// requestPath is the path of an absolute or relative request URI.
func requestPath(uri string) string {
	if i := strings.Index(uri, "://"); i >= 0 {
		uri = uri[i+3:]
		if j := strings.IndexByte(uri, '/'); j >= 0 {
			return uri[j:]
		}
		return "/"
	}
	return uri
}

func (is *Issuer) serveIssue(w http.ResponseWriter, r *http.Request) {
	req, status, msg := readTokenRequest(w, r)
	if status != 0 {
		is.count("bad_request")
		http.Error(w, msg, status)
		return
	}
	now := time.Now()
	var key *privacypass.PrivateKey
	for _, k := range is.state.Load().keys { // newest first
		pk := k.Public()
		id := pk.ID()
		if pk.Type == req.Type && id[privacypass.KeyIDLen-1] == req.TruncatedKeyID &&
			!pk.NotBefore.After(now) && now.Before(pk.NotAfter.Add(-is.cfg.Overlap)) {
			key = k
			break
		}
	}
	if key == nil {
		is.count("unknown_key")
		http.Error(w, "no issuance key with this truncated key id", http.StatusUnprocessableEntity)
		return
	}
	resp, err := key.Issue(req)
	if err != nil {
		is.count("failed")
		http.Error(w, "cannot evaluate the blinded message", http.StatusUnprocessableEntity)
		return
	}
	is.count("issued")
	w.Header().Set("Content-Type", privacypass.MediaTypeResponse)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(resp)
}

func (is *Issuer) count(result string) {
	if is.issued != nil {
		is.issued.WithLabelValues(result).Inc()
	}
}

// readTokenRequest reads and parses the TokenRequest of r, or returns the
// status to answer: 405 for a method other than POST, 415 for a media type
// other than MediaTypeRequest, 400 for an unreadable or oversized body, 422
// for an unsupported token type or a blinded message of the wrong size.
// The attester uses it too, so that a bad request dies before the issuer.
func readTokenRequest(w http.ResponseWriter, r *http.Request) (*privacypass.TokenRequest, int, string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return nil, http.StatusMethodNotAllowed, "POST a token request"
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != privacypass.MediaTypeRequest {
		return nil, http.StatusUnsupportedMediaType, "want Content-Type: " + privacypass.MediaTypeRequest
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, privacypass.MaxTokenRequestBytes))
	if err != nil {
		return nil, http.StatusBadRequest, "unreadable or oversized token request"
	}
	req := new(privacypass.TokenRequest)
	switch err := req.UnmarshalBinary(body); {
	case errors.Is(err, privacypass.ErrUnsupportedType):
		return nil, http.StatusUnprocessableEntity, "unsupported token type"
	case len(body) < 3:
		return nil, http.StatusBadRequest, "truncated token request"
	case err != nil:
		return nil, http.StatusUnprocessableEntity, "blinded message of the wrong size"
	}
	return req, 0, ""
}
