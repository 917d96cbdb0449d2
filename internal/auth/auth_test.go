package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func hashLine(name, secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return name + " " + hex.EncodeToString(sum[:]) + "\n"
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func request(authz ...string) *http.Request {
	r, _ := http.NewRequest(http.MethodConnect, "https://example.com:443", nil)
	for _, a := range authz {
		r.Header.Add("Proxy-Authorization", a)
	}
	return r
}

func status(err error) int {
	if err == nil {
		return 200
	}
	var r *Refusal
	if errors.As(err, &r) {
		return r.Status
	}
	return -1
}

func TestStatic(t *testing.T) {
	file := writeFile(t, "# users\n\n"+hashLine("alice", "s3cret-a")+hashLine("bob", "s3cret-b"))
	bearer, err := NewStatic(StaticConfig{Scheme: Bearer, File: file})
	if err != nil {
		t.Fatal(err)
	}
	basic, err := NewStatic(StaticConfig{Scheme: Basic, File: file, Realm: "r"})
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		a     *Static
		authz []string
		want  int
	}{
		{bearer, []string{"Bearer s3cret-a"}, 200},
		{bearer, []string{"bearer  s3cret-b "}, 200},
		{bearer, nil, 407},
		{bearer, []string{"Bearer wrong"}, 407},
		{bearer, []string{"Basic " + b64("alice:s3cret-a")}, 407},
		{bearer, []string{"PrivateToken token=abc", "Bearer s3cret-a"}, 200},
		{basic, []string{"Basic " + b64("alice:s3cret-a")}, 200},
		{basic, []string{"Basic " + b64("alice:s3cret-b")}, 407}, // bob's secret
		{basic, []string{"Basic " + b64("carol:s3cret-a")}, 407},
		{basic, []string{"Basic " + b64("alice")}, 407},
		{basic, []string{"Basic !!!"}, 407},
		{basic, []string{"Bearer s3cret-a"}, 407},
	} {
		err := tc.a.Authenticate(request(tc.authz...))
		if got := status(err); got != tc.want {
			t.Errorf("%s %q: status %d (%v), want %d", tc.a.scheme, tc.authz, got, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q shows a secret", err)
		}
	}
	err = basic.Authenticate(request())
	var hh interface{ Header() http.Header }
	if !errors.As(err, &hh) || hh.Header().Get("Proxy-Authenticate") != `Basic realm="r"` {
		t.Errorf("challenge: %v", err)
	}
}

func TestRate(t *testing.T) {
	file := writeFile(t, hashLine("alice", "a")+hashLine("bob", "b"))
	s, err := NewStatic(StaticConfig{Scheme: Bearer, File: file, Rate: 0.001, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Authenticate(request("Bearer a")); err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
	}
	if got := status(s.Authenticate(request("Bearer a"))); got != 429 {
		t.Errorf("fourth tunnel: %d, want 429", got)
	}
	if err := s.Authenticate(request("Bearer b")); err != nil {
		t.Errorf("another credential: %v", err)
	}
}

func TestBadFiles(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{"", "no credentials"},
		{"alice\n", ":1: want NAME SHA256HEX"},
		{"alice abc\n", ":1: want NAME SHA256HEX"},
		{"alice " + strings.Repeat("zz", 32) + "\n", ":1: the hash is not hex"},
		{hashLine("a", "x") + hashLine("a", "y"), `:2: "a" is given twice`},
	} {
		_, err := NewStatic(StaticConfig{Scheme: Bearer, File: writeFile(t, tc.content)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.content, err, tc.want)
		}
	}
	if _, err := NewStatic(StaticConfig{Scheme: Bearer, File: "/no/such/file"}); err == nil {
		t.Error("missing file accepted")
	}
}

type fixed struct{ err error }

func (f fixed) Authenticate(*http.Request) error { return f.err }

func TestChain(t *testing.T) {
	admit := fixed{}
	ask := func(scheme string) fixed { return fixed{challenge(scheme, "none")} }
	deny := fixed{&Refusal{Status: 403, Reason: "no"}}
	slow := fixed{&Refusal{Status: 429, Reason: "slow"}}
	for _, tc := range []struct {
		name  string
		chain Chain
		want  int
	}{
		{"empty", Chain{}, 200},
		{"first admits", Chain{admit, deny}, 200},
		{"second admits", Chain{ask("A"), admit}, 200},
		{"403 stops", Chain{deny, admit}, 403},
		{"429 stops", Chain{ask("A"), slow, admit}, 429},
		{"all ask", Chain{ask("A"), ask("B")}, 407},
	} {
		if got := status(tc.chain.Authenticate(request())); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	err := Chain{ask("A"), ask("B")}.Authenticate(request())
	var hh interface{ Header() http.Header }
	if !errors.As(err, &hh) || !slices.Equal(hh.Header().Values("Proxy-Authenticate"), []string{"A", "B"}) {
		t.Errorf("challenges: %v", err)
	}
}

// FuzzAuthenticate: any Proxy-Authorization gets an answer a front can
// send (admit, 407 or 429), never a panic, and no error repeats it.
func FuzzAuthenticate(f *testing.F) {
	f.Add("Bearer s3cret", "Basic YWxpY2U6czNjcmV0")
	f.Add("Basic !!!", "bearer")
	f.Add("PrivateToken token=abc", "")
	dir := f.TempDir()
	path := filepath.Join(dir, "creds")
	if err := os.WriteFile(path, []byte(hashLine("alice", "s3cret")), 0o600); err != nil {
		f.Fatal(err)
	}
	var auths []*Static
	for _, s := range []Scheme{Bearer, Basic} {
		a, err := NewStatic(StaticConfig{Scheme: s, File: path, Rate: 1000, Burst: 1000})
		if err != nil {
			f.Fatal(err)
		}
		auths = append(auths, a)
	}
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		for _, a := range auths {
			err := Chain{a}.Authenticate(request(v1, v2))
			switch got := status(err); got {
			case 200, 407, 429:
			default:
				t.Fatalf("status %d (%v)", got, err)
			}
			if err != nil && len(v1) > 8 && strings.Contains(err.Error(), v1) {
				t.Errorf("error %q repeats the credential", err)
			}
		}
	})
}
