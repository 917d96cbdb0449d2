package twohop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/certs"
)

// TestMain doubles as the helper programs that the test runs inside its
// namespaces, as the test binary under ip netns exec (so they need no build
// of their own): "origin ADDR CERTFILE" and "get URL".
func TestMain(m *testing.M) {
	helpers := map[string]func(args []string) error{"origin": serveOrigin, "get": get}
	if len(os.Args) > 1 {
		if run, ok := helpers[os.Args[1]]; ok {
			if err := run(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	goleak.VerifyTestMain(m)
}

// originBodySize is the size of the origin's random body, a few hundred
// packets.
const originBodySize = 256 << 10

// serveOrigin is the origin: HTTP/3 on UDP and HTTPS (HTTP/2, HTTP/1.1) on
// TCP, both on ADDR, with a fresh self-signed certificate for ADDR's host
// written to CERTFILE. Every answer is the address the request came from
// ("IP:PORT\n"), then a random body whose SHA-256 it prints at start; it
// logs each request on stderr ("request PROTO from IP:PORT"). It serves
// until SIGTERM.
func serveOrigin(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: origin ADDR CERTFILE")
	}
	addr, certFile := args[0], args[1]
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	cert, pemBytes, err := certs.SelfSigned(host)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pemBytes, 0o644); err != nil {
		return err
	}
	body := make([]byte, originBodySize)
	rand.Read(body)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(os.Stderr, "request %s from %s\n", r.Proto, r.RemoteAddr)
		io.WriteString(w, r.RemoteAddr+"\n")
		w.Write(body)
	})
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}}

	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	h3 := &http3.Server{Handler: h, TLSConfig: http3.ConfigureTLSConfig(tlsConf.Clone())}
	hs := &http.Server{Handler: h, TLSConfig: tlsConf, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 2)
	go func() { served <- h3.Serve(pc) }()
	go func() { served <- hs.ServeTLS(l, "", "") }()
	fmt.Printf("listening on %s\nbody sha256 %x\n", addr, sha256.Sum256(body))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	}
	return errors.Join(h3.Close(), hs.Close(), pc.Close())
}

// get prints the body of an http:// URL, such as an admin listener's
// /metrics on the namespace's loopback.
func get(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: get URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", args[0], resp.Status)
	}
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}
