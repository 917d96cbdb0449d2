package h3proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
)

// zeros serves n bytes from a fixed buffer, without allocating per request.
type zeros struct{}

var zeroBuf = make([]byte, 64<<10)

func (zeros) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	for n > 0 {
		m, err := w.Write(zeroBuf[:min(n, len(zeroBuf))])
		if err != nil {
			return
		}
		n -= m
	}
}

// fetch GETs n bytes from origin over HTTP/3, through u if it is not nil.
func fetch(b *testing.B, origin *net.UDPAddr, u *h3.UDPConn, n int) {
	var rt http.RoundTripper
	if u != nil {
		h3 := u.HTTP3(testnet.NewCert(b).ClientTLS(), nil)
		defer h3.Close()
		rt = h3
	} else {
		h3 := &http3.Transport{TLSClientConfig: testnet.NewCert(b).ClientTLS()}
		defer h3.Close()
		rt = h3
	}
	resp, err := (&http.Client{Transport: rt}).Get("https://" + origin.String() + "/?n=" + strconv.Itoa(n))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil || got != int64(n) {
		b.Fatalf("read %d of %d bytes: %v", got, n, err)
	}
}

// BenchmarkHTTP3Download compares an HTTP/3 download directly with the same
// download inside a CONNECT-UDP tunnel, all in this process (for pprof; the
// cross-process comparison is cmd/masque-bench).
func BenchmarkHTTP3Download(b *testing.B) {
	const size = 20 << 20
	origin := testnet.H3Origin(b, testnet.IPv4, zeros{})
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			fetch(b, origin, nil, size)
		}
	})
	b.Run("connect-udp", func(b *testing.B) {
		p := startProxy(b, testnet.IPv4)
		c := p.dial(b, h3.Config{})
		b.SetBytes(size)
		for b.Loop() {
			u, err := c.ListenUDP(context.Background(), origin.String())
			if err != nil {
				b.Fatal(err)
			}
			fetch(b, origin, u, size)
			u.Close()
		}
	})
}
