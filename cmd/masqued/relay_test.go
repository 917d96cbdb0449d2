package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

// TestRelayRestartDuringChainedDownload restarts an ingress relay (masqued
// -relay-to) with SIGHUP while a download runs through it: HTTP/3 to the
// origin, in a CONNECT-UDP tunnel of the egress connection, which runs in a
// CONNECT-UDP tunnel through the relay. The download completes whole on the
// old process, which then exits 0; a new chained fetch goes through the new
// process; the relay's access log, with targets, names only the egress; and
// the relay still refuses any other target.
func TestRelayRestartDuringChainedDownload(t *testing.T) {
	bin := buildMasqued(t)
	becomeSubreaper(t)
	// The origin paces its body, so that the download spans the restart.
	const chunk, chunks = 64 << 10, 96 // 6 MiB over about 2 s
	payload := bytes.Repeat([]byte("chained download "), chunk/16)[:chunk]
	want := sha256.New()
	for range chunks {
		want.Write(payload)
	}
	origin := testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range chunks {
			w.Write(payload)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	}))
	egress := proxytest.Start(t, testnet.IPv4, true)
	pidFile := filepath.Join(t.TempDir(), "relay.pid")
	relay := startProcess(t, bin, "-listen", "127.0.0.1:0", "-relay-to", egress.Addr.String(), "-drain-timeout", "60s",
		"-pid-file", pidFile, "-access-log", "target", "-log-format", "json")
	relayAddr := relay.line(t, "listening on ")
	tlsConf := trust(t, relay.line(t, "certificate "))
	eventually(t, 10*time.Second, "the PID file", func() bool { return pidFrom(pidFile) == relay.cmd.Process.Pid })
	ctx := testnet.Context(t, 2*time.Minute)

	// fetch fetches from the origin through a new chain, and reports the
	// body's digest; started is closed once the first chunk is in.
	fetch := func(started chan<- struct{}) ([]byte, error) {
		first, err := client.NewSession(ctx, &client.Dialer{TLSConfig: tlsConf, QUICConfig: h3.RelayQUICConfig(), Transport: client.HTTP3}, "https://"+relayAddr)
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		defer first.Close()
		second, err := (&client.Dialer{TLSConfig: testnet.NewCert(t).ClientTLS(), Transport: client.HTTP3, Relay: first}).Dial(ctx, egress.URL)
		if err != nil {
			return nil, fmt.Errorf("egress through the relay: %w", err)
		}
		defer second.Close()
		pc, err := second.ListenUDP(ctx, origin.String())
		if err != nil {
			return nil, err
		}
		defer pc.Close()
		rt := proxyconn.NewOriginTransport(pc, testnet.NewCert(t).ClientTLS(), nil)
		defer rt.Close()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+origin.String()+"/", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.CopyN(h, resp.Body, chunk); err != nil {
			return nil, err
		}
		if started != nil {
			close(started)
		}
		if _, err := io.Copy(h, resp.Body); err != nil {
			return nil, err
		}
		return h.Sum(nil), nil
	}

	started := make(chan struct{})
	type result struct {
		sum []byte
		err error
	}
	during := make(chan result, 1)
	go func() { sum, err := fetch(started); during <- result{sum, err} }()
	select {
	case <-started:
	case r := <-during:
		t.Fatalf("the download ended before the restart: %v", r.err)
	}
	child := restartWithSIGHUP(t, relay, pidFile)
	r := <-during
	if r.err != nil || !bytes.Equal(r.sum, want.Sum(nil)) {
		t.Fatalf("the download across the restart: %v (checksum matches: %v)", r.err, bytes.Equal(r.sum, want.Sum(nil)))
	}
	if err := relay.wait(t, 45*time.Second); err != nil {
		t.Fatalf("the old relay process: %v\n%s", err, relay.log(t))
	}
	// The new process relays a new chain, and the download arrives whole.
	if sum, err := fetch(nil); err != nil || !bytes.Equal(sum, want.Sum(nil)) {
		t.Fatalf("a chain through the new relay process: %v", err)
	}
	// And it is a relay still: the origin itself is refused.
	c, err := (&client.Dialer{TLSConfig: tlsConf, Transport: client.HTTP3}).Dial(ctx, "https://"+relayAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var pe *proxyconn.ProxyError
	if _, err := c.ListenUDP(ctx, origin.String()); !errors.As(err, &pe) || pe.StatusCode != http.StatusForbidden || !strings.Contains(pe.ProxyStatus, "destination_ip_prohibited") {
		t.Errorf("the new relay process, asked for the origin: %v", err)
	}
	stopRestarted(t, child)
	// The access log names targets: the egress, never the origin.
	log := relay.log(t)
	if n := strings.Count(log, egress.Addr.String()); n < 2 {
		t.Errorf("the relay's access log names the egress %d times, want a line per chain:\n%s", n, log)
	}
	for line := range strings.Lines(log) {
		if strings.Contains(line, origin.String()) && !strings.Contains(line, "destination_ip_prohibited") {
			t.Errorf("the relay's log names the origin %s outside the refusal of it: %s", origin, line)
		}
	}
}
