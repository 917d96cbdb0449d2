package privacypass

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRefillNeedsAPool: without a pool, the refill goroutine, the only one
// that mints ahead, never starts, so no token is minted behind the caller's
// back. (Minting itself, against a real attester and issuer, is tested in
// ppserver.)
func TestRefillNeedsAPool(t *testing.T) {
	cl, err := NewClient(ClientConfig{AttesterURL: "https://127.0.0.1:1/token-request", PoolSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.refill()
	cl.mu.Lock()
	started := cl.started
	cl.mu.Unlock()
	if started {
		t.Fatal("the refill goroutine started without a pool")
	}
}
