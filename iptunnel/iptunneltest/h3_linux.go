package iptunneltest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/certs"
)

// H3Origin is an HTTP/3 origin on OriginIP:OriginPort (UDP) serving Data
// at /data.
type H3Origin struct {
	Data []byte
	pool *x509.CertPool
}

// InnerQUIC fits the tunnel's 1280-byte link: 1200-byte UDP payloads.
func InnerQUIC() *quic.Config {
	return &quic.Config{InitialPacketSize: 1200, MaxIdleTimeout: 30 * time.Second}
}

// Pool trusts the origin's certificate.
func (o *H3Origin) Pool() *x509.CertPool { return o.pool }

// StartH3Origin starts the HTTP/3 origin in the origin namespace.
func (n *Net) StartH3Origin(t testing.TB, data []byte) *H3Origin {
	cert, pem, err := certs.SelfSigned(OriginIP)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.Pool(pem)
	if err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn
	if err := n.Origin.Do(func() error {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(OriginIP, OriginPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/data", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(data) })
	srv := &http3.Server{Handler: mux, TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		QUICConfig: InnerQUIC()}
	serve(t, func() error { return srv.Serve(pc) }, func() { srv.Close(); pc.Close() })
	return &H3Origin{Data: data, pool: pool}
}

// CheckH3Download fetches /data over HTTP/3 from the client namespace,
// through whatever routes it has, and checks the bytes.
func (n *Net) CheckH3Download(t testing.TB, o *H3Origin) {
	t.Helper()
	var udp *net.UDPConn
	if err := n.Client.Do(func() error {
		var err error
		udp, err = net.ListenUDP("udp", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	raddr := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(net.JoinHostPort(OriginIP, OriginPort)))
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: o.pool},
		QUICConfig:      InnerQUIC(),
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.Dial(ctx, udp, raddr, tc, qc)
		},
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+raddr.String()+"/data", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	nb, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(o.Data); nb != int64(len(o.Data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("HTTP/3 download: %d bytes with the wrong checksum, want %d", nb, len(o.Data))
	}
}
