package ppserver

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/privacypass"
	"go.uber.org/goleak"
	"golang.org/x/time/rate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestClient(t *testing.T, ta *testAuthority, c privacypass.ClientConfig) *privacypass.Client {
	t.Helper()
	c.AttesterURL = ta.attester.URL + privacypass.DefaultRequestPath
	if c.APIKey == "" {
		c.APIKey = ta.key
	}
	cl, err := privacypass.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// challenges returns the Proxy-Authenticate values rd answers r with.
func challenges(t *testing.T, rd *Redeemer, r *http.Request) []string {
	t.Helper()
	err := rd.Authenticate(r)
	return refusal(t, err, http.StatusProxyAuthRequired).Header().Values("Proxy-Authenticate")
}

func TestClientAnswersAndPools(t *testing.T) {
	ta := newTestAuthority(t, rate.Inf, 0)
	rd, err := NewRedeemer(RedeemerConfig{IssuerName: "issuer.example", OriginInfo: "proxy.example", Keys: ta.issuer})
	if err != nil {
		t.Fatal(err)
	}
	cl := newTestClient(t, ta, privacypass.ClientConfig{DirectoryURL: ta.directory, PoolSize: 3})
	ctx := context.Background()
	if cred, err := cl.Authorize(ctx, nil); cred != "" || err != nil {
		t.Fatalf("before any challenge: %q, %v", cred, err)
	}
	cred, err := cl.Authorize(ctx, challenges(t, rd, tunnelRequest()))
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.Authenticate(tunnelRequest(cred)); err != nil {
		t.Fatal(err)
	}
	// The pool fills in the background; then tunnels present tokens up front.
	deadline := time.Now().Add(10 * time.Second)
	for cl.Pooled() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d tokens", cl.Pooled())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		cred, err := cl.Authorize(ctx, nil)
		if err != nil || cred == "" {
			t.Fatalf("pooled token: %q, %v", cred, err)
		}
		if err := rd.Authenticate(tunnelRequest(cred)); err != nil {
			t.Fatal(err)
		}
	}
	// A spent token's 407 is answered with another token.
	refused := challenges(t, rd, tunnelRequest(cred))
	if cred, err = cl.Authorize(ctx, refused); err != nil {
		t.Fatal(err)
	}
	if err := rd.Authenticate(tunnelRequest(cred)); err != nil {
		t.Fatal(err)
	}
}

func TestClientChoosesChallenges(t *testing.T) {
	ta := newTestAuthority(t, rate.Inf, 0)
	ctx := context.Background()
	pub := ta.issuer.VerificationKeys()[0].Public() // type 2
	raw, _ := (&privacypass.TokenChallenge{Type: privacypass.TypePublic, IssuerName: "issuer.example"}).MarshalBinary()
	greased, _ := (&privacypass.TokenChallenge{Type: 0x1a1a, IssuerName: "issuer.example"}).MarshalBinary()
	rogue, err := privacypass.GenerateKey(privacypass.TypePublic, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.URLEncoding.EncodeToString
	withKey := `PrivateToken challenge="` + b64(raw) + `", token-key="` + b64(pub.Encoded()) + `"`
	rogueKey := `PrivateToken challenge="` + b64(raw) + `", token-key="` + b64(rogue.Public().Encoded()) + `"`
	noKey := `PrivateToken challenge="` + b64(raw) + `"`
	grease := `PrivateToken challenge="` + b64(greased) + `", token-key="AAAA"`

	check := func(cl *privacypass.Client, values []string, wantErr error) {
		t.Helper()
		cred, err := cl.Authorize(ctx, values)
		if !errors.Is(err, wantErr) {
			t.Fatalf("%v: got %v, want %v", values, err, wantErr)
		}
		if err != nil {
			return
		}
		tokBytes, err := privacypass.ParseCredentials(cred)
		if err != nil {
			t.Fatal(err)
		}
		var tok privacypass.Token
		if err := tok.UnmarshalBinary(tokBytes); err != nil {
			t.Fatal(err)
		}
		if err := pub.Verify(&tok); err != nil {
			t.Fatal(err)
		}
	}
	consistent := newTestClient(t, ta, privacypass.ClientConfig{DirectoryURL: ta.directory})
	check(consistent, []string{grease, withKey}, nil)
	check(consistent, []string{noKey}, nil)
	check(consistent, []string{rogueKey}, privacypass.ErrNoUsableChallenge)
	check(consistent, []string{grease}, privacypass.ErrNoUsableChallenge)
	trusting := newTestClient(t, ta, privacypass.ClientConfig{})
	check(trusting, []string{noKey}, privacypass.ErrNoUsableChallenge)

	var me *privacypass.MintError
	badKey := newTestClient(t, ta, privacypass.ClientConfig{APIKey: "nope"})
	if _, err := badKey.Authorize(ctx, []string{withKey}); !errors.As(err, &me) || me.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad API key: %v", err)
	}
	if !strings.Contains(me.Error(), "401") || strings.Contains(me.Error(), "nope") {
		t.Errorf("error %q", me)
	}
}

// TestClientPrefetch: with the challenge it expects, a client presents a
// token to the first tunnel request, before any 407.
func TestClientPrefetch(t *testing.T) {
	ta := newTestAuthority(t, rate.Inf, 0)
	rd, err := NewRedeemer(RedeemerConfig{IssuerName: "issuer.example", OriginInfo: "proxy.example", Keys: ta.issuer})
	if err != nil {
		t.Fatal(err)
	}
	expect := privacypass.TokenChallenge{Type: privacypass.TypePublic, IssuerName: "issuer.example", OriginInfo: "proxy.example"}
	cl := newTestClient(t, ta, privacypass.ClientConfig{DirectoryURL: ta.directory, PoolSize: 2, Prefetch: &expect})
	deadline := time.Now().Add(10 * time.Second)
	for cl.Pooled() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d tokens", cl.Pooled())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cred, err := cl.Authorize(context.Background(), nil)
	if err != nil || cred == "" {
		t.Fatalf("first request: %q, %v", cred, err)
	}
	if err := rd.Authenticate(tunnelRequest(cred)); err != nil {
		t.Fatal(err)
	}
	if _, err := privacypass.NewClient(privacypass.ClientConfig{AttesterURL: "https://a.example/", Prefetch: &expect}); err == nil {
		t.Error("Prefetch without DirectoryURL: no error")
	}
}

// TestClientWithoutPool mints exactly one token per 407 and none ahead.
func TestClientWithoutPool(t *testing.T) {
	ta := newTestAuthority(t, rate.Inf, 0)
	rd, err := NewRedeemer(RedeemerConfig{IssuerName: "issuer.example", Keys: ta.issuer})
	if err != nil {
		t.Fatal(err)
	}
	cl := newTestClient(t, ta, privacypass.ClientConfig{PoolSize: -1})
	for range 2 {
		cred, err := cl.Authorize(context.Background(), challenges(t, rd, tunnelRequest()))
		if err != nil {
			t.Fatal(err)
		}
		if err := rd.Authenticate(tunnelRequest(cred)); err != nil {
			t.Fatal(err)
		}
	}
	// Only the refill goroutine mints ahead, and it never starts without a
	// pool (privacypass's TestRefillNeedsAPool).
	ta.checkPrivacy(t, 2)
	if cl.Pooled() != 0 {
		t.Fatalf("%d tokens minted ahead", cl.Pooled())
	}
}
