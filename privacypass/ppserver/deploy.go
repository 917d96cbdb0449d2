package ppserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqued/masqued/privacypass"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// This file wires the parts into the deployments the commands run: an
// issuer and/or attester behind one handler (cmd/pp-issuer, and masqued's
// embedded mode), and the proxy's key source for an issuer elsewhere.

// ServicesConfig configures the Privacy Pass services of one process.
type ServicesConfig struct {
	// Issuer, when set, is served: its directory, and its issuance
	// endpoint unless Attester is set too (then only the attester reaches it).
	Issuer *Issuer
	// Accounts, when set, runs an attester at DefaultRequestPath that
	// relays to IssuerURL, or to Issuer in-process when IssuerURL is "".
	Accounts  *Accounts
	IssuerURL string
	Rate      rate.Limit
	Burst     int
	Logger    *slog.Logger
}

// NewServicesHandler returns the handler of the services c describes.
func NewServicesHandler(c ServicesConfig) (http.Handler, error) {
	mux := http.NewServeMux()
	if c.Issuer != nil {
		mux.Handle(privacypass.DirectoryPath, c.Issuer)
	}
	switch {
	case c.Accounts != nil:
		ac := AttesterConfig{Accounts: c.Accounts, IssuerURL: c.IssuerURL, Rate: c.Rate, Burst: c.Burst, Logger: c.Logger}
		if ac.IssuerURL == "" {
			if c.Issuer == nil {
				return nil, errors.New("privacypass: an attester needs an issuer URL or an issuer in the process")
			}
			// Relay in-process: the issuance endpoint is not served at all.
			ac.IssuerURL = "http://issuer.internal" + requestPath(c.Issuer.cfg.RequestURI)
			ac.Client = &http.Client{Transport: handlerTransport{c.Issuer}}
		}
		a, err := NewAttester(ac)
		if err != nil {
			return nil, err
		}
		mux.Handle(privacypass.DefaultRequestPath, a)
	case c.Issuer != nil:
		mux.Handle(requestPath(c.Issuer.cfg.RequestURI), c.Issuer)
	default:
		return nil, errors.New("privacypass: neither an issuer nor an attester to serve")
	}
	return mux, nil
}

// handlerTransport answers requests with a handler in-process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

// DirectoryKeys is a KeySource that follows an issuer's directory: a proxy's
// view of an issuer elsewhere. Only type-2 keys are kept, since a proxy
// cannot check type-1 tokens without the issuer's private key. It refreshes
// in the background until Close; it is safe for concurrent use.
type DirectoryKeys struct {
	url    string
	client *http.Client
	logger *slog.Logger
	keys   atomic.Pointer[[]privacypass.Verifier]
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewDirectoryKeys fetches the directory at url, failing if it cannot, and
// then again every refresh (0 = five minutes). client nil = a client with a
// 10-second timeout.
func NewDirectoryKeys(url string, client *http.Client, refresh time.Duration, logger *slog.Logger) (*DirectoryKeys, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if refresh == 0 {
		refresh = 5 * time.Minute
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &DirectoryKeys{url: url, client: client, logger: logger}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if err := d.fetch(ctx); err != nil {
		cancel()
		return nil, err
	}
	d.wg.Add(1)
	go d.refreshLoop(ctx, refresh)
	return d, nil
}

func (d *DirectoryKeys) refreshLoop(ctx context.Context, every time.Duration) {
	defer d.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.fetch(ctx); err != nil && ctx.Err() == nil {
				d.logger.Warn("refreshing the issuer directory; keeping the keys known", "error", err)
			}
		}
	}
}

func (d *DirectoryKeys) fetch(ctx context.Context) error {
	dir, err := privacypass.FetchDirectory(ctx, d.client, d.url)
	if err != nil {
		return err
	}
	var keys []privacypass.Verifier
	for _, k := range dir.Keys {
		if k.Type == privacypass.TypePublic {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return errors.New("privacypass: the issuer directory lists no type-2 key")
	}
	d.keys.Store(&keys)
	return nil
}

// VerificationKeys returns the directory's type-2 keys.
func (d *DirectoryKeys) VerificationKeys() []privacypass.Verifier { return *d.keys.Load() }

// Close stops the refresh.
func (d *DirectoryKeys) Close() error {
	d.cancel()
	d.wg.Wait()
	return nil
}

// Embedded is an issuer and an attester with one demo account, for a proxy
// that runs all of Privacy Pass in one process (masqued -auth privacypass
// without -pp-issuer): the quick start, and a single-host deployment.
type Embedded struct {
	Issuer  *Issuer
	Handler http.Handler // the directory and the attester; serve it over TLS
	KeyFile string       // the demo account's API key, for masque-client -account-key
}

// NewEmbedded loads or makes, under stateDir, the issuer keys (keys/), an
// accounts file with the account "demo" (accounts), and that account's API
// key (demo.key, 0600).
// reg, if not nil, gets the issuer's counters.
func NewEmbedded(stateDir string, logger *slog.Logger, reg prometheus.Registerer) (*Embedded, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("privacypass state: %w", err)
	}
	is, err := NewIssuer(IssuerConfig{Dir: filepath.Join(stateDir, "keys"), Logger: logger, Registerer: reg})
	if err != nil {
		return nil, err
	}
	e := &Embedded{Issuer: is, KeyFile: filepath.Join(stateDir, "demo.key")}
	accountsFile := filepath.Join(stateDir, "accounts")
	if _, err := os.Stat(e.KeyFile); errors.Is(err, os.ErrNotExist) {
		key, line := NewAPIKey("demo")
		if err := os.WriteFile(accountsFile, []byte("# made by masqued for the demo account\n"+line), 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(e.KeyFile, []byte(key+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	accounts, err := LoadAccounts(accountsFile)
	if err != nil {
		return nil, err
	}
	if e.Handler, err = NewServicesHandler(ServicesConfig{Issuer: is, Accounts: accounts, Logger: logger}); err != nil {
		return nil, err
	}
	return e, nil
}

// ProxyConfig is the Privacy Pass side of a proxy (masqued -auth privacypass).
type ProxyConfig struct {
	// IssuerDirectory is the directory URL of an issuer elsewhere, whose
	// type-2 keys the proxy accepts; "" runs an Embedded issuer and
	// attester in this process.
	IssuerDirectory string
	// Listen is the TCP address the embedded issuer and attester serve
	// HTTPS on, with TLSConfig; StateDir keeps their keys and demo account.
	Listen    string
	TLSConfig *tls.Config
	StateDir  string
	// Redis is the address of a Redis server (host:port, or the path of a
	// Unix socket) holding the spent tokens of a fleet; "" = this process's
	// memory.
	Redis string
	// ProxyName is origin_info in the challenges; a host that is
	// unspecified (0.0.0.0, ::) or empty means none.
	ProxyName  string
	Logger     *slog.Logger
	Registerer prometheus.Registerer // for the Redeemer's and an embedded issuer's counters; nil = not counted
}

// ProxyAuth is a running Privacy Pass setup for a proxy: its Redeemer is the
// tunnel Authenticator. Close stops what it started.
type ProxyAuth struct {
	*Redeemer
	// With an embedded issuer: what a client needs.
	DirectoryURL, AttesterURL, KeyFile string

	closers []func() error
	wg      sync.WaitGroup
}

// StartProxyAuth sets up c.
func StartProxyAuth(c ProxyConfig) (_ *ProxyAuth, err error) {
	pa := &ProxyAuth{}
	defer func() {
		if err != nil {
			pa.Close()
		}
	}()
	rc := RedeemerConfig{OriginInfo: originInfo(c.ProxyName), Logger: c.Logger, Registerer: c.Registerer}
	if c.Redis != "" {
		rdb := redis.NewClient(redisOptions(c.Redis))
		pa.closers = append(pa.closers, rdb.Close)
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			return nil, fmt.Errorf("redis %s: %w", c.Redis, err)
		}
		rc.Spent = NewRedisStore(rdb, "privacypass:spent:")
	}
	if c.IssuerDirectory != "" {
		u, err := url.Parse(c.IssuerDirectory)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("issuer directory %q is not an absolute URL", c.IssuerDirectory)
		}
		keys, err := NewDirectoryKeys(c.IssuerDirectory, nil, 0, c.Logger)
		if err != nil {
			return nil, err
		}
		pa.closers = append(pa.closers, keys.Close)
		rc.IssuerName, rc.Keys = u.Host, keys
	} else {
		if err := pa.startEmbedded(c, &rc); err != nil {
			return nil, err
		}
	}
	if pa.Redeemer, err = NewRedeemer(rc); err != nil {
		return nil, err
	}
	return pa, nil
}

// redisOptions connects to addr: host:port, or the path of a Unix socket.
func redisOptions(addr string) *redis.Options {
	if strings.HasPrefix(addr, "/") {
		return &redis.Options{Network: "unix", Addr: addr}
	}
	return &redis.Options{Addr: addr}
}

// startEmbedded serves an Embedded issuer and attester on c.Listen.
func (pa *ProxyAuth) startEmbedded(c ProxyConfig, rc *RedeemerConfig) error {
	e, err := NewEmbedded(c.StateDir, c.Logger, c.Registerer)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: e.Handler, TLSConfig: c.TLSConfig.Clone(), ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	pa.wg.Add(2)
	go func() {
		defer pa.wg.Done()
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) && c.Logger != nil {
			c.Logger.Error("privacypass services", "error", err)
		}
	}()
	go func() {
		defer pa.wg.Done()
		e.Issuer.Run(ctx)
	}()
	pa.closers = append(pa.closers, func() error { cancel(); return srv.Close() })
	base := "https://" + ln.Addr().String()
	pa.DirectoryURL, pa.AttesterURL, pa.KeyFile = base+privacypass.DirectoryPath, base+privacypass.DefaultRequestPath, e.KeyFile
	rc.IssuerName, rc.Keys = ln.Addr().String(), e.Issuer
	return nil
}

// originInfo is the proxy's name for origin_info, or "" when it names no
// particular host.
func originInfo(name string) string {
	host, _, err := net.SplitHostPort(name)
	if err != nil {
		host = name
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		return ""
	}
	return name
}

// Close stops the embedded services and the directory refresh, and closes
// the Redis client.
func (pa *ProxyAuth) Close() error {
	var errs []error
	for i := len(pa.closers) - 1; i >= 0; i-- {
		errs = append(errs, pa.closers[i]())
	}
	pa.wg.Wait()
	return errors.Join(errs...)
}
