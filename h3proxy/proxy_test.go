package h3proxy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
)

func TestTCPEcho(t *testing.T) {
	for _, host := range []string{testnet.IPv4, testnet.IPv6} {
		t.Run(host, func(t *testing.T) {
			echo := testnet.TCPEcho(t, host)
			p := startProxy(t, host)
			c := p.dial(t, h3.Config{})
			conn, err := c.DialTCP(testContext(t), echo.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			msg := bytes.Repeat([]byte("masqued "), 100000)
			go func() {
				conn.Write(msg)
				conn.(interface{ CloseWrite() error }).CloseWrite()
			}()
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo returned %d bytes, want %d", len(got), len(msg))
			}
		})
	}
}

func TestUDPEcho(t *testing.T) {
	for _, dgrams := range []bool{true, false} {
		t.Run("datagrams="+strconv.FormatBool(dgrams), func(t *testing.T) {
			echo := testnet.UDPEcho(t, testnet.IPv4)
			p := startProxy(t, testnet.IPv4)
			c := p.dial(t, h3.Config{DisableDatagrams: !dgrams})
			if c.Datagrams() != dgrams {
				t.Fatalf("Datagrams() = %v, want %v", c.Datagrams(), dgrams)
			}
			u, err := c.ListenUDP(testContext(t), echo.String())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			for i := range 20 {
				ping(t, u, "ping "+strconv.Itoa(i))
			}
		})
	}
}

// TestHTTP3InsideConnectUDP fetches 10 MB over HTTP/3 from an origin through
// a CONNECT-UDP tunnel (QUIC inside QUIC), with QUIC datagrams and with
// DATAGRAM capsules on the stream. The origin keeps path MTU discovery on, so
// its probes exceed what the tunnel carries and must be dropped, not fatal.
func TestHTTP3InsideConnectUDP(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
	sum := sha256.Sum256(body)
	origin := testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	for _, dgrams := range []bool{true, false} {
		t.Run("datagrams="+strconv.FormatBool(dgrams), func(t *testing.T) {
			p := startProxy(t, testnet.IPv4)
			c := p.dial(t, h3.Config{DisableDatagrams: !dgrams})
			u, err := c.ListenUDP(testContext(t), origin.String())
			if err != nil {
				t.Fatal(err)
			}
			h3 := u.HTTP3(testnet.NewCert(t).ClientTLS(), nil)
			defer h3.Close()
			resp, err := (&http.Client{Transport: h3}).Get("https://" + origin.String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sum {
				t.Fatalf("body: %d bytes, checksum mismatch", len(got))
			}
			t.Logf("dropped: proxy %v, client %d", p.metric(t, "masqued_datagrams_dropped_total"), u.Dropped())
		})
	}
}
