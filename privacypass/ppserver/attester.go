package ppserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/masqued/masqued/privacypass"
	"golang.org/x/time/rate"
)

// Accounts maps API keys to account ids. Keys are stored as SHA-256
// digests: they are 32 random bytes, so a fast hash is as good as a slow
// password hash, and a leaked file yields no usable key. It is immutable
// and safe for concurrent use.
type Accounts struct {
	byDigest map[[sha256.Size]byte]string
}

// ParseAccounts reads an accounts file: one "ACCOUNT-ID SHA256-HEX-OF-KEY"
// a line; blank lines and lines starting with # are skipped.
func ParseAccounts(r io.Reader) (*Accounts, error) {
	a := &Accounts{byDigest: map[[sha256.Size]byte]string{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		var d [sha256.Size]byte
		if len(f) != 2 || hex.DecodedLen(len(f[1])) != len(d) {
			return nil, fmt.Errorf("accounts line %d: want ACCOUNT-ID SHA256-HEX", n)
		}
		if _, err := hex.Decode(d[:], []byte(f[1])); err != nil {
			return nil, fmt.Errorf("accounts line %d: %w", n, err)
		}
		a.byDigest[d] = f[0]
	}
	return a, sc.Err()
}

// LoadAccounts reads the accounts file at path.
func LoadAccounts(path string) (*Accounts, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseAccounts(f)
}

// NewAPIKey makes an API key and its accounts-file line for account.
func NewAPIKey(account string) (key, line string) {
	b := make([]byte, 32)
	rand.Read(b)
	key = base64.RawURLEncoding.EncodeToString(b)
	d := sha256.Sum256([]byte(key))
	return key, account + " " + hex.EncodeToString(d[:]) + "\n"
}

// lookup returns the account of key, or "".
func (a *Accounts) lookup(key string) string { return a.byDigest[sha256.Sum256([]byte(key))] }

// AttesterConfig configures an Attester.
type AttesterConfig struct {
	Accounts *Accounts // who may mint tokens; required
	// IssuerURL is the issuer's request URL, where blinded requests go.
	IssuerURL string
	// Client carries requests to the issuer; nil = a client with a 10s
	// timeout.
	Client *http.Client
	// Rate and Burst bound issuance per account (a token bucket); 0 = one
	// token a second with a burst of 50.
	Rate  rate.Limit
	Burst int
	// Logger records refusals by reason, never an account or key; nil = silent.
	Logger *slog.Logger
}

// Attester is the token proxy of RFC 9576's split deployment: it checks a
// client's account (Authorization: Bearer API-KEY), limits how many tokens
// an account mints, and relays the blinded TokenRequest to the issuer
// without anything that names the account. It sees no token: the request is
// blinded and the response is only passed back. It is safe for concurrent
// use.
type Attester struct {
	cfg AttesterConfig

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // by account; guarded by mu, bounded by Accounts
}

// NewAttester returns an Attester for c.
func NewAttester(c AttesterConfig) (*Attester, error) {
	if c.Accounts == nil || c.IssuerURL == "" {
		return nil, fmt.Errorf("privacypass: an attester needs Accounts and IssuerURL")
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Rate == 0 {
		c.Rate, c.Burst = 1, 50
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Attester{cfg: c, limiters: map[string]*rate.Limiter{}}, nil
}

// ServeHTTP handles one token request.
func (a *Attester) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	account := ""
	if scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		account = a.cfg.Accounts.lookup(strings.TrimSpace(key))
	}
	if account == "" {
		a.cfg.Logger.Debug("token request refused", "reason", "unknown account")
		w.Header().Set("WWW-Authenticate", `Bearer realm="privacypass-attester"`)
		http.Error(w, "unknown API key", http.StatusUnauthorized)
		return
	}
	req, status, msg := readTokenRequest(w, r)
	if status != 0 {
		http.Error(w, msg, status)
		return
	}
	if res := a.limiter(account).Reserve(); !res.OK() || res.Delay() > 0 {
		delay := res.Delay()
		res.Cancel()
		a.cfg.Logger.Debug("token request refused", "reason", "rate limit")
		w.Header().Set("Retry-After", strconv.Itoa(int(delay/time.Second)+1))
		http.Error(w, "token rate limit reached", http.StatusTooManyRequests)
		return
	}
	body, _ := req.MarshalBinary() // parsed, so it marshals
	resp, status, err := a.relay(r.Context(), body)
	if err != nil {
		a.cfg.Logger.Warn("issuer unreachable", "error", err)
		http.Error(w, "issuer unavailable", http.StatusBadGateway)
		return
	}
	if status != http.StatusOK {
		http.Error(w, "issuer refused: "+http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", privacypass.MediaTypeResponse)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(resp)
}

func (a *Attester) limiter(account string) *rate.Limiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.limiters[account]
	if l == nil {
		l = rate.NewLimiter(a.cfg.Rate, a.cfg.Burst)
		a.limiters[account] = l
	}
	return l
}

// relay sends body to the issuer as a fresh request: nothing of the
// client's request (headers, address, account) goes with it. A 4xx of the
// issuer is handed back as its status; anything else unexpected is an error.
func (a *Attester) relay(ctx context.Context, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.IssuerURL, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", privacypass.MediaTypeRequest)
	req.Header.Set("Accept", privacypass.MediaTypeResponse)
	res, err := a.cfg.Client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode >= 400 && res.StatusCode < 500 {
		return nil, res.StatusCode, nil
	}
	if res.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("issuer answered %s", res.Status)
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != privacypass.MediaTypeResponse {
		return nil, 0, fmt.Errorf("issuer answered Content-Type %q", res.Header.Get("Content-Type"))
	}
	resp, err := io.ReadAll(io.LimitReader(res.Body, privacypass.MaxTokenRequestBytes))
	return resp, http.StatusOK, err
}
