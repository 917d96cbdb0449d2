package ppserver

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/privacypass"
)

func getDirectory(t *testing.T, h http.Handler) (*privacypass.Directory, *http.Response) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, privacypass.DirectoryPath, nil))
	res := w.Result()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != privacypass.MediaTypeDirectory {
		t.Fatalf("directory: %s, %q", res.Status, res.Header.Get("Content-Type"))
	}
	d, err := privacypass.ParseDirectory(w.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return d, res
}

func postTokenRequest(h http.Handler, contentType string, body []byte) *http.Response {
	r := httptest.NewRequest(http.MethodPost, privacypass.DefaultRequestPath, bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestIssuerPersistsKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	is, err := NewIssuer(IssuerConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, res := getDirectory(t, is)
	if d.RequestURI != privacypass.DefaultRequestPath || len(d.Keys) != 2 || res.Header.Get("Cache-Control") != "max-age=3600" {
		t.Fatalf("directory %+v, Cache-Control %q", d, res.Header.Get("Cache-Control"))
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("key directory: %v, %v", fi.Mode(), err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 2 {
		t.Fatalf("key files: %v", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v", f, fi.Mode(), err)
		}
	}
	again, err := NewIssuer(IssuerConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := getDirectory(t, again)
	for i := range d.Keys {
		if d.Keys[i].ID() != d2.Keys[i].ID() {
			t.Fatal("a restarted issuer has other keys")
		}
	}
}

func TestIssuerRotation(t *testing.T) {
	dir := t.TempDir()
	c := IssuerConfig{Dir: dir, Types: []privacypass.TokenType{privacypass.TypePrivate}, Lifetime: 10 * time.Hour, Overlap: time.Hour}
	is, err := NewIssuer(c)
	if err != nil {
		t.Fatal(err)
	}
	first := is.VerificationKeys()[0].Public()
	now := first.NotBefore
	if !first.NotAfter.Equal(now.Add(11 * time.Hour)) {
		t.Fatalf("first key retires at %v, want 11h after %v", first.NotAfter, now)
	}
	// An hour before its end the successor is published, not yet in use.
	if err := is.Rotate(now.Add(9*time.Hour + time.Minute)); err != nil {
		t.Fatal(err)
	}
	d, _ := getDirectory(t, is)
	if len(d.Keys) != 2 || !d.Keys[0].NotBefore.Equal(now.Add(10*time.Hour)) || d.Keys[1].ID() != first.ID() {
		t.Fatalf("after publishing the successor: %+v", d.Keys)
	}
	if cur := d.Current(privacypass.TypePrivate, now.Add(9*time.Hour+time.Minute)); cur.ID() != first.ID() {
		t.Error("clients are told to use the successor before its not-before")
	}
	if cur := d.Current(privacypass.TypePrivate, now.Add(10*time.Hour)); cur.ID() == first.ID() {
		t.Error("clients are told to keep the old key after the successor's not-before")
	}
	id1, id2 := d.Keys[0].ID(), d.Keys[1].ID()
	if id1[privacypass.KeyIDLen-1] == id2[privacypass.KeyIDLen-1] {
		t.Error("live keys share a truncated key id")
	}
	// After the overlap the first key retires and its file goes.
	if err := is.Rotate(now.Add(11 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if d, _ = getDirectory(t, is); len(d.Keys) != 1 || d.Keys[0].ID() == first.ID() {
		t.Fatalf("after retirement: %d keys", len(d.Keys))
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.pem")); len(files) != 1 {
		t.Fatalf("key files after retirement: %v", files)
	}
}

func TestIssuerIssues(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	is, err := NewIssuer(IssuerConfig{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := getDirectory(t, is)
	for _, typ := range []privacypass.TokenType{privacypass.TypePublic, privacypass.TypePrivate} {
		pk := d.Current(typ, time.Now())
		raw, _ := (&privacypass.TokenChallenge{Type: typ, IssuerName: "issuer.example"}).MarshalBinary()
		p, err := pk.NewPendingToken(raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		res := postTokenRequest(is, privacypass.MediaTypeRequest, p.Request)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != privacypass.MediaTypeResponse {
			t.Fatalf("%v: %s %s", typ, res.Status, body)
		}
		tok, err := p.Finalize(body)
		if err != nil {
			t.Fatal(err)
		}
		if err := is.VerificationKeys()[slicesIndexType(is.VerificationKeys(), typ)].Verify(tok); err != nil {
			t.Fatal(err)
		}

		otherKey := bytes.Clone(p.Request)
		otherKey[2]++
		wrongType := bytes.Clone(p.Request)
		wrongType[1] = 7
		for name, tt := range map[string]struct {
			contentType string
			body        []byte
			status      int
		}{
			"media type":   {"application/octet-stream", p.Request, http.StatusUnsupportedMediaType},
			"no key":       {privacypass.MediaTypeRequest, otherKey, http.StatusUnprocessableEntity},
			"token type":   {privacypass.MediaTypeRequest, wrongType, http.StatusUnprocessableEntity},
			"short":        {privacypass.MediaTypeRequest, p.Request[:len(p.Request)-1], http.StatusUnprocessableEntity},
			"long":         {privacypass.MediaTypeRequest, append(bytes.Clone(p.Request), 0), http.StatusUnprocessableEntity},
			"truncated":    {privacypass.MediaTypeRequest, p.Request[:2], http.StatusBadRequest},
			"oversized":    {privacypass.MediaTypeRequest, make([]byte, 2000), http.StatusBadRequest},
			"with charset": {privacypass.MediaTypeRequest + "; charset=x", p.Request, http.StatusOK},
		} {
			if res := postTokenRequest(is, tt.contentType, tt.body); res.StatusCode != tt.status {
				t.Errorf("%v %s: %s, want %d", typ, name, res.Status, tt.status)
			}
		}
	}
	w := httptest.NewRecorder()
	is.ServeHTTP(w, httptest.NewRequest(http.MethodGet, privacypass.DefaultRequestPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET issuance: %d", w.Code)
	}
	for result, want := range map[string]float64{"issued": 4, "unknown_key": 2, "bad_request": 13, "failed": 0} {
		if got := testnet.Metric(t, reg, "masqued_privacypass_issuance_total", "result", result); got != want {
			t.Errorf("issuance %s: %v, want %v", result, got, want)
		}
	}
}

func slicesIndexType(ks []privacypass.Verifier, t privacypass.TokenType) int {
	for i, k := range ks {
		if k.Public().Type == t {
			return i
		}
	}
	return -1
}

// FuzzParseDirectory checks that a directory from the network never panics
// the parser and that every key it yields is usable.
func FuzzParseDirectory(f *testing.F) {
	is, err := NewIssuer(IssuerConfig{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(is.state.Load().directory)
	f.Add([]byte(`{"issuer-request-uri":"/r","token-keys":[{"token-type":1,"token-key":"AA=="},{"token-type":9,"token-key":"x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := privacypass.ParseDirectory(b)
		if err != nil {
			return
		}
		for _, k := range d.Keys {
			if again, err := privacypass.ParsePublicKey(k.Type, k.Encoded()); err != nil || again.ID() != k.ID() {
				t.Fatalf("a parsed key does not parse again: %v", err)
			}
		}
	})
}
