package ppserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/masqued/masqued/privacypass"
	"github.com/redis/go-redis/v9"
)

// SpentStore remembers the nonces of redeemed tokens, per token key, so
// that each token is redeemed once (RFC 9577 §2.2.1 double-spend
// prevention). With an empty redemption context a nonce must stay spent
// until its key retires; after that the token no longer verifies anyway.
type SpentStore interface {
	// Spend records nonce under keyID until expiry and reports whether it
	// was unspent. It is safe for concurrent use. On error the caller
	// refuses the token: a store that cannot answer must not admit replays.
	Spend(ctx context.Context, keyID [privacypass.KeyIDLen]byte, nonce [privacypass.NonceLen]byte, expiry time.Time) (bool, error)
}

// MemoryStore is a SpentStore for one proxy process. Nonces are kept per
// key and dropped together once the key's expiry passes. The zero value is
// not usable; call NewMemoryStore. It is safe for concurrent use.
type MemoryStore struct {
	now func() time.Time

	mu        sync.Mutex
	keys      map[[privacypass.KeyIDLen]byte]*spentSet // guarded by mu
	nextSweep time.Time                                // guarded by mu
}

type spentSet struct {
	expiry time.Time
	nonces map[[privacypass.NonceLen]byte]struct{}
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{now: time.Now, keys: map[[privacypass.KeyIDLen]byte]*spentSet{}}
}

// Spend implements SpentStore.
func (m *MemoryStore) Spend(_ context.Context, keyID [privacypass.KeyIDLen]byte, nonce [privacypass.NonceLen]byte, expiry time.Time) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.After(m.nextSweep) {
		m.sweepLocked(now)
	}
	s := m.keys[keyID]
	if s == nil {
		s = &spentSet{nonces: map[[privacypass.NonceLen]byte]struct{}{}}
		m.keys[keyID] = s
	}
	s.expiry = later(s.expiry, expiry)
	if _, spent := s.nonces[nonce]; spent {
		return false, nil
	}
	s.nonces[nonce] = struct{}{}
	return true, nil
}

// sweepLocked drops the sets of expired keys, at most once a minute.
func (m *MemoryStore) sweepLocked(now time.Time) {
	for id, s := range m.keys {
		if now.After(s.expiry) {
			delete(m.keys, id)
		}
	}
	m.nextSweep = now.Add(time.Minute)
}

// Len returns the number of nonces held, for tests and metrics.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.keys {
		n += len(s.nonces)
	}
	return n
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// RedisStore is a SpentStore in Redis, shared by a fleet of proxies so that a
// token spent on any of them is refused by all. Each nonce is one key,
// written with SET NX and an expiry at its token key's retirement.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisStore returns a store on client (which the caller owns and
// closes). Keys are prefix, the token key id and the nonce, in binary.
func NewRedisStore(client redis.UniversalClient, prefix string) *RedisStore {
	return &RedisStore{client: client, prefix: prefix}
}

// Spend implements SpentStore.
func (s *RedisStore) Spend(ctx context.Context, keyID [privacypass.KeyIDLen]byte, nonce [privacypass.NonceLen]byte, expiry time.Time) (bool, error) {
	ttl := time.Until(expiry)
	if ttl < time.Second {
		ttl = time.Second // the key is retiring: remember briefly rather than not at all
	}
	key := make([]byte, 0, len(s.prefix)+privacypass.KeyIDLen+privacypass.NonceLen)
	key = append(append(append(key, s.prefix...), keyID[:]...), nonce[:]...)
	fresh, err := s.client.SetNX(ctx, string(key), 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("redis SET NX: %w", err)
	}
	return fresh, nil
}
