// Command pp-issuer runs the Privacy Pass issuer and attester (RFC 9576's
// split deployment) for masqued proxies started with -auth privacypass
// -pp-issuer URL. The issuer never learns who asks for tokens; the attester
// checks accounts and never sees a token.
//
//	pp-issuer -keys DIR                         an issuer: directory and issuance
//	pp-issuer -accounts FILE -issuer-url URL    an attester relaying to that issuer
//	pp-issuer -keys DIR -accounts FILE          both; issuance only through the attester
//	pp-issuer new-account -accounts FILE NAME   adds an account, prints its API key
//
// It serves HTTPS with -tls-cert and -tls-key, else plain HTTP (for loopback
// or behind a TLS terminator), and prints "listening on HOST:PORT".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/privacypass/ppserver"
)

func main() { cli.Main("pp-issuer", run) }

const usage = `usage: pp-issuer [flags]
       pp-issuer new-account -accounts FILE NAME

Serves a Privacy Pass issuer (-keys), an attester (-accounts), or both.

`

// config is pp-issuer's command line.
type config struct {
	listen, tlsCert, tlsKey, keys, accounts, issuerURL, logLevel string
	issuer                                                       ppserver.IssuerConfig
	rate                                                         float64
	burst                                                        int
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("pp-issuer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:4435", "TCP `address` to serve on")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "certificate chain PEM `file` (with -tls-key); none = plain HTTP")
	fs.StringVar(&c.tlsKey, "tls-key", "", "private key PEM `file` (with -tls-cert)")
	fs.StringVar(&c.keys, "keys", "", "run an issuer with its keys in `dir` (made 0700)")
	fs.StringVar(&c.accounts, "accounts", "", "run an attester for the accounts in `file` (lines: NAME SHA256-HEX-OF-API-KEY)")
	fs.StringVar(&c.issuerURL, "issuer-url", "", "the attester relays token requests to this issuer `URL` (default: the issuer in this process)")
	fs.Float64Var(&c.rate, "rate", 1, "tokens per second an account may mint, on average")
	fs.IntVar(&c.burst, "burst", 50, "tokens an account may mint at once")
	fs.DurationVar(&c.issuer.Lifetime, "key-lifetime", 30*24*time.Hour, "how long each issuer key is used")
	fs.DurationVar(&c.issuer.Overlap, "key-overlap", 24*time.Hour, "how long a new key is published before use, and an old one kept after")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	if err := cli.Parse(fs, args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, cli.Usagef(fs, "unexpected argument %q", fs.Arg(0))
	case c.keys == "" && c.accounts == "":
		return nil, cli.Usagef(fs, "give -keys (an issuer), -accounts (an attester) or both")
	case c.accounts != "" && c.keys == "" && c.issuerURL == "":
		return nil, cli.Usagef(fs, "an attester without -keys needs -issuer-url")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return nil, cli.Usagef(fs, "-tls-cert and -tls-key go together")
	case c.rate <= 0 || c.burst <= 0:
		return nil, cli.Usagef(fs, "-rate and -burst must be positive")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "new-account" {
		return newAccount(args[1:], stdout, stderr)
	}
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := cli.Logger(stderr, c.logLevel, "text")
	if err != nil {
		return err
	}
	sc := ppserver.ServicesConfig{IssuerURL: c.issuerURL, Rate: rate.Limit(c.rate), Burst: c.burst, Logger: logger}
	if c.keys != "" {
		c.issuer.Dir, c.issuer.Logger = c.keys, logger
		if sc.Issuer, err = ppserver.NewIssuer(c.issuer); err != nil {
			return err
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		rotateCtx, stop := context.WithCancel(ctx)
		defer stop()
		wg.Go(func() { sc.Issuer.Run(rotateCtx) })
	}
	if c.accounts != "" {
		if sc.Accounts, err = ppserver.LoadAccounts(c.accounts); err != nil {
			return fmt.Errorf("-accounts: %w", err)
		}
	}
	h, err := ppserver.NewServicesHandler(sc)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() {
		if c.tlsCert != "" {
			served <- srv.ServeTLS(ln, c.tlsCert, c.tlsKey)
		} else {
			served <- srv.Serve(ln)
		}
	}()
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	logger.Info("serving", "addr", ln.Addr().String(), "issuer", c.keys != "", "attester", c.accounts != "", "tls", c.tlsCert != "")
	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	// A fresh context: ctx is already done, and would make the drain not wait.
	drainCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdownErr := srv.Shutdown(drainCtx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return shutdownErr
}

// newAccount appends an account to an accounts file (made 0600) and prints
// its API key, which is kept nowhere else.
func newAccount(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pp-issuer new-account", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: pp-issuer new-account -accounts FILE NAME\n\nAdds the account NAME to FILE and prints its API key.\n\n")
		fs.PrintDefaults()
	}
	file := fs.String("accounts", "", "the accounts `file` to add to")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() != 1 {
		return cli.Usagef(fs, "give -accounts FILE and one account NAME")
	}
	key, line := ppserver.NewAPIKey(fs.Arg(0))
	f, err := os.OpenFile(*file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, key)
	return err
}
