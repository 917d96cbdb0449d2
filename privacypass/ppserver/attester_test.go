package ppserver

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/privacypass"
	"golang.org/x/time/rate"
)

// issuerSpy records what reaches the issuer, to check that nothing of the
// account does.
type issuerSpy struct {
	h    http.Handler
	mu   sync.Mutex
	seen []string // each request's method, URL, headers and body
}

func (s *issuerSpy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var b strings.Builder
	r.Header.Write(&b)
	s.mu.Lock()
	s.seen = append(s.seen, r.Method+" "+r.URL.String()+"\n"+b.String()+"\n"+string(body))
	s.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.h.ServeHTTP(w, r)
}

// testAuthority is an issuer behind an attester, both on loopback, with one
// account.
type testAuthority struct {
	issuer    *Issuer
	spy       *issuerSpy
	issuerLog *bytes.Buffer
	attester  *httptest.Server
	directory string // URL
	account   string
	key       string
}

func newTestAuthority(t *testing.T, limit rate.Limit, burst int) *testAuthority {
	t.Helper()
	ta := &testAuthority{account: "alice@example.com", issuerLog: new(bytes.Buffer)}
	var err error
	ta.issuer, err = NewIssuer(IssuerConfig{Logger: slog.New(slog.NewTextHandler(ta.issuerLog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ta.spy = &issuerSpy{h: ta.issuer}
	issuerSrv := httptest.NewServer(ta.spy)
	t.Cleanup(issuerSrv.Close)
	ta.directory = issuerSrv.URL + privacypass.DirectoryPath
	var line string
	ta.key, line = NewAPIKey(ta.account)
	accounts, err := ParseAccounts(strings.NewReader("# test\n\n" + line))
	if err != nil {
		t.Fatal(err)
	}
	att, err := NewAttester(AttesterConfig{Accounts: accounts, IssuerURL: issuerSrv.URL + privacypass.DefaultRequestPath, Rate: limit, Burst: burst})
	if err != nil {
		t.Fatal(err)
	}
	ta.attester = httptest.NewServer(att)
	t.Cleanup(ta.attester.Close)
	return ta
}

func (ta *testAuthority) post(t *testing.T, key, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ta.attester.URL+privacypass.DefaultRequestPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := ta.attester.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func TestAttester(t *testing.T) {
	ta := newTestAuthority(t, rate.Every(time.Hour), 3)
	pk := ta.issuer.VerificationKeys()[0].Public()
	raw, _ := (&privacypass.TokenChallenge{Type: pk.Type, IssuerName: "issuer.example"}).MarshalBinary()
	p, err := pk.NewPendingToken(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, body := ta.post(t, ta.key, privacypass.MediaTypeRequest, p.Request)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != privacypass.MediaTypeResponse {
		t.Fatalf("%s %s", res.Status, body)
	}
	tok, err := p.Finalize(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.issuer.VerificationKeys()[0].Verify(tok); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(p.Request)
	bad[2]++ // no such key: the issuer's 422 comes back
	for name, tt := range map[string]struct {
		key, contentType string
		body             []byte
		status           int
	}{
		"no key":       {"", privacypass.MediaTypeRequest, p.Request, http.StatusUnauthorized},
		"wrong key":    {ta.key + "x", privacypass.MediaTypeRequest, p.Request, http.StatusUnauthorized},
		"media type":   {ta.key, "text/plain", p.Request, http.StatusUnsupportedMediaType},
		"short":        {ta.key, privacypass.MediaTypeRequest, p.Request[:10], http.StatusUnprocessableEntity},
		"issuer's 422": {ta.key, privacypass.MediaTypeRequest, bad, http.StatusUnprocessableEntity},
		// The burst of 3 is spent by the first request, "issuer's 422" and this one.
	} {
		if res, body := ta.post(t, tt.key, tt.contentType, tt.body); res.StatusCode != tt.status {
			t.Errorf("%s: %s %s, want %d", name, res.Status, body, tt.status)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, ta.attester.URL+privacypass.DefaultRequestPath, bytes.NewReader(p.Request))
	req.Header.Set("Content-Type", privacypass.MediaTypeRequest)
	req.Header.Set("Authorization", "bearer  "+ta.key) // the scheme is case-insensitive
	res, err = ta.attester.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("third token: %s", res.Status)
	}
	res, _ = ta.post(t, ta.key, privacypass.MediaTypeRequest, p.Request)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("past the limit: %s, Retry-After %q", res.Status, res.Header.Get("Retry-After"))
	}
	ta.checkPrivacy(t, 3)
}

// checkPrivacy asserts that the issuer saw n token requests (any number if
// n < 0) and that neither they nor the issuer's log hold the account or its
// key.
func (ta *testAuthority) checkPrivacy(t *testing.T, n int) {
	t.Helper()
	ta.spy.mu.Lock()
	defer ta.spy.mu.Unlock()
	relayed := 0
	for _, s := range ta.spy.seen {
		if strings.HasPrefix(s, "POST") {
			relayed++
		}
		if strings.Contains(s, ta.account) || strings.Contains(s, ta.key) || strings.Contains(strings.ToLower(s), "authorization") {
			t.Errorf("the issuer saw the account:\n%s", s)
		}
	}
	if n >= 0 && relayed != n {
		t.Errorf("the issuer saw %d token requests, want %d", relayed, n)
	}
	if log := ta.issuerLog.String(); strings.Contains(log, ta.account) || strings.Contains(log, ta.key) {
		t.Errorf("the issuer logged the account:\n%s", log)
	}
}

func TestParseAccountsRejects(t *testing.T) {
	for _, in := range []string{"alice", "alice abc", "alice " + strings.Repeat("zz", 32), "a b c"} {
		if _, err := ParseAccounts(strings.NewReader(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestReadAPIKey(t *testing.T) {
	f := filepath.Join(t.TempDir(), "key")
	os.WriteFile(f, []byte("# a comment\n\n  secret-key  \nsecond\n"), 0o600)
	if key, err := privacypass.ReadAPIKey(f); err != nil || key != "secret-key" {
		t.Fatalf("%q, %v", key, err)
	}
	os.WriteFile(f, []byte("# only a comment\n"), 0o600)
	if _, err := privacypass.ReadAPIKey(f); err == nil {
		t.Fatal("a file without a key: no error")
	}
}
