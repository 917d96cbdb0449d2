package ppserver

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/masqued/masqued/internal/proc"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/privacypass"
)

// testKeys are one key of each type, made once: RSA key generation is slow.
var testKeys = sync.OnceValue(func() [2]*privacypass.PrivateKey {
	var ks [2]*privacypass.PrivateKey
	for i, t := range []privacypass.TokenType{privacypass.TypePrivate, privacypass.TypePublic} {
		k, err := privacypass.GenerateKey(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			panic(err)
		}
		ks[i] = k
	}
	return ks
})

// issue has sk answer p's request, as the issuer does.
func issue(t testing.TB, sk *privacypass.PrivateKey, p *privacypass.PendingToken) []byte {
	t.Helper()
	var req privacypass.TokenRequest
	if err := req.UnmarshalBinary(p.Request); err != nil {
		t.Fatal(err)
	}
	resp, err := sk.Issue(&req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// mint makes a token for challenge c under sk, as client and issuer would.
func mint(t testing.TB, sk *privacypass.PrivateKey, c privacypass.TokenChallenge) []byte {
	t.Helper()
	c.Type = sk.Public().Type
	raw, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	p, err := sk.Public().NewPendingToken(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.Finalize(issue(t, sk, p))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tok.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func tunnelRequest(credentials ...string) *http.Request {
	r, _ := http.NewRequest(http.MethodConnect, "https://proxy.example/", nil)
	for _, c := range credentials {
		r.Header.Add("Proxy-Authorization", c)
	}
	return r
}

// refusal asserts that err is a Refusal with status, and returns it.
func refusal(t *testing.T, err error, status int) *Refusal {
	t.Helper()
	var ref *Refusal
	if !errors.As(err, &ref) || ref.HTTPStatus() != status {
		t.Fatalf("got %v, want a %d refusal", err, status)
	}
	return ref
}

func newTestRedeemer(t testing.TB, spent SpentStore) *Redeemer {
	t.Helper()
	ks := testKeys()
	rd, err := NewRedeemer(RedeemerConfig{IssuerName: "issuer.example", OriginInfo: "proxy.example",
		Keys: StaticKeys{ks[1], ks[0]}, Spent: spent})
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

var testChallenge = privacypass.TokenChallenge{IssuerName: "issuer.example", OriginInfo: "proxy.example"}

func TestRedeemerChallenges(t *testing.T) {
	rd := newTestRedeemer(t, nil)
	ref := refusal(t, rd.Authenticate(tunnelRequest()), http.StatusProxyAuthRequired)
	cs := privacypass.ParseChallenges(ref.Header().Values("Proxy-Authenticate"))
	if len(cs) != 2 {
		t.Fatalf("%d challenges: %v", len(cs), ref.Header())
	}
	ks := testKeys()
	for i, want := range []*privacypass.PrivateKey{ks[1], ks[0]} { // type 2 first
		c := cs[i]
		if c.TokenChallenge.Type != want.Public().Type || c.TokenChallenge.IssuerName != "issuer.example" ||
			c.TokenChallenge.OriginInfo != "proxy.example" || len(c.TokenChallenge.RedemptionContext) != 0 ||
			!bytes.Equal(c.TokenKey, want.Public().Encoded()) {
			t.Errorf("challenge %d: %+v", i, c)
		}
	}
	// A client minting from the challenge itself is admitted.
	raw := cs[0].Raw
	pk, err := privacypass.ParsePublicKey(cs[0].TokenChallenge.Type, cs[0].TokenKey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pk.NewPendingToken(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.Finalize(issue(t, ks[1], p))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := tok.MarshalBinary()
	if err := rd.Authenticate(tunnelRequest(privacypass.FormatCredentials(enc))); err != nil {
		t.Fatal(err)
	}
}

func TestRedeemerRefuses(t *testing.T) {
	ks := testKeys()
	other, err := privacypass.GenerateKey(privacypass.TypePrivate, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	good := mint(t, ks[1], testChallenge)
	forged := bytes.Clone(good)
	forged[len(forged)-1] ^= 1
	wrongType := bytes.Clone(good)
	wrongType[1] = 3
	otherOrigin := testChallenge
	otherOrigin.OriginInfo = "elsewhere.example"
	reg := prometheus.NewPedanticRegistry()
	rd, err := NewRedeemer(RedeemerConfig{IssuerName: "issuer.example", OriginInfo: "proxy.example",
		Keys: StaticKeys{ks[1], ks[0]}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for name, cred := range map[string]string{
		"forged":         privacypass.FormatCredentials(forged),
		"wrong key":      privacypass.FormatCredentials(mint(t, other, testChallenge)),
		"wrong type":     privacypass.FormatCredentials(wrongType),
		"truncated":      privacypass.FormatCredentials(good[:len(good)-1]),
		"other origin":   privacypass.FormatCredentials(mint(t, ks[1], otherOrigin)),
		"not base64":     `PrivateToken token="%%%"`,
		"empty":          `PrivateToken token=""`,
		"another scheme": `Basic dXNlcjpwYXNz`,
	} {
		ref := refusal(t, rd.Authenticate(tunnelRequest(cred)), http.StatusProxyAuthRequired)
		if len(privacypass.ParseChallenges(ref.Header().Values("Proxy-Authenticate"))) != 2 {
			t.Errorf("%s: the 407 carries no challenges", name)
		}
		if strings.Contains(ref.Error(), cred) {
			t.Errorf("%s: the error holds the credentials", name)
		}
	}
	// Both types are admitted once, then refused as spent.
	for _, sk := range ks {
		cred := privacypass.FormatCredentials(mint(t, sk, testChallenge))
		if err := rd.Authenticate(tunnelRequest(`Basic x`, cred)); err != nil {
			t.Fatalf("%v: %v", sk.Public().Type, err)
		}
		ref := refusal(t, rd.Authenticate(tunnelRequest(cred)), http.StatusProxyAuthRequired)
		if ref.Reason != ResultSpent {
			t.Errorf("replay: %v", ref)
		}
	}
	for result, want := range map[string]float64{ResultInvalid: 7, ResultNoToken: 1, ResultAdmitted: 2, ResultSpent: 2, ResultStoreFailure: 0} {
		if got := testnet.Metric(t, reg, "masqued_privacypass_redemptions_total", "result", result); got != want {
			t.Errorf("%s: counted %v, want %v", result, got, want)
		}
	}
}

func TestMemoryStoreExpiry(t *testing.T) {
	m := NewMemoryStore()
	now := time.Unix(1e9, 0)
	m.now = func() time.Time { return now }
	ctx := context.Background()
	k1, k2 := [privacypass.KeyIDLen]byte{1}, [privacypass.KeyIDLen]byte{2}
	for _, step := range []struct {
		key   [privacypass.KeyIDLen]byte
		nonce byte
		fresh bool
	}{{k1, 1, true}, {k1, 1, false}, {k2, 1, true}, {k1, 2, true}} {
		fresh, _ := m.Spend(ctx, step.key, [privacypass.NonceLen]byte{step.nonce}, now.Add(time.Hour))
		if fresh != step.fresh {
			t.Fatalf("key %d nonce %d: fresh %v", step.key[0], step.nonce, fresh)
		}
	}
	now = now.Add(2 * time.Hour)
	if fresh, _ := m.Spend(ctx, [privacypass.KeyIDLen]byte{3}, [privacypass.NonceLen]byte{}, now.Add(time.Hour)); !fresh || m.Len() != 1 {
		t.Fatalf("after expiry: %d nonces held, want 1", m.Len())
	}
}

// testRedis is a redis-server of the test's own, reachable two ways.
type testRedis struct {
	addr string // 127.0.0.1:PORT
	sock string // the path of its Unix socket
}

// startRedis runs a redis-server for the test, with its files in a
// temporary directory, on a loopback port and a Unix socket. It skips the
// test when redis-server is missing, except in CI (CI=true), where `make
// test` must have installed it.
func startRedis(t *testing.T) testRedis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (make deps installs it)")
		}
		t.Skip("redis-server is not installed; make deps installs it")
	}
	dir := t.TempDir()
	r := testRedis{sock: filepath.Join(dir, "redis.sock")}
	for try := 0; ; try++ {
		// redis-server has no "any free port": take one that was free a
		// moment ago, and try again if another process took it meanwhile.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.addr = l.Addr().String()
		l.Close()
		_, port, _ := net.SplitHostPort(r.addr)
		p, err := proc.Start(context.Background(), path, "--bind", "127.0.0.1", "--port", port,
			"--unixsocket", r.sock, "--unixsocketperm", "700", "--dir", dir, "--save", "", "--appendonly", "no",
			"--logfile", filepath.Join(dir, "redis.log"))
		if err != nil {
			t.Fatal(err)
		}
		if ready(r.addr) {
			t.Cleanup(func() {
				if err := p.Stop(); err != nil {
					t.Error(err)
				}
			})
			return r
		}
		p.Stop()
		if try == 3 {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server did not answer: %s", log)
		}
	}
}

// ready reports whether a redis-server answers at addr within 10 seconds.
func ready(addr string) bool {
	c := redis.NewClient(redisOptions(addr))
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c.Ping(context.Background()).Err() == nil {
			return true
		}
	}
	return false
}

// newRedisClient connects to addr (host:port or a socket path) until the
// test ends.
func newRedisClient(t *testing.T, addr string) *redis.Client {
	opts := redisOptions(addr)
	opts.MaxRetries = -1
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisReplayAcrossProxies spends a token on one proxy and presents it
// to another that shares the Redis store.
func TestRedisReplayAcrossProxies(t *testing.T) {
	r := startRedis(t)
	a := newTestRedeemer(t, NewRedisStore(newRedisClient(t, r.addr), "pp:"))
	b := newTestRedeemer(t, NewRedisStore(newRedisClient(t, r.sock), "pp:"))
	ks := testKeys()
	for _, sk := range ks {
		cred := privacypass.FormatCredentials(mint(t, sk, testChallenge))
		if err := a.Authenticate(tunnelRequest(cred)); err != nil {
			t.Fatal(err)
		}
		refusal(t, b.Authenticate(tunnelRequest(cred)), http.StatusProxyAuthRequired)
		refusal(t, a.Authenticate(tunnelRequest(cred)), http.StatusProxyAuthRequired)
	}
	// The nonce expires with its key.
	c := newRedisClient(t, r.addr)
	keys, err := c.Keys(context.Background(), "pp:*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("%d keys in redis: %v", len(keys), err)
	}
	ttl, err := c.TTL(context.Background(), keys[0]).Result()
	if err != nil || ttl < 23*time.Hour || ttl > 24*time.Hour {
		t.Errorf("TTL %v, want the key's retirement in 24h: %v", ttl, err)
	}
}

// TestRedisDown refuses tokens with 503 when the store cannot answer.
func TestRedisDown(t *testing.T) {
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock"), MaxRetries: -1})
	defer c.Close()
	rd := newTestRedeemer(t, NewRedisStore(c, "pp:"))
	refusal(t, rd.Authenticate(tunnelRequest(privacypass.FormatCredentials(mint(t, testKeys()[1], testChallenge)))), http.StatusServiceUnavailable)
}
