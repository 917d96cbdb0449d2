package vpn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/iptunnel/iptunneltest"
)

// BenchmarkDownloads compares, in one run and on one test network, TCP and
// HTTP/3 downloads through CONNECT-IP (this package's device-wide tunnel)
// with the same downloads through CONNECT and CONNECT-UDP (client/h3), all
// over HTTP/3 to the same masqued. Besides MB/s it reports cpu-s/GB: the
// CPU time of the whole process (client, proxy and origin, user and
// system) per GB downloaded, so the cases compare with each other, not
// with the per-process figures of masque-bench.
//
//	go test ./cmd/masque-client/internal/vpn -run XXX -bench Downloads -benchtime 3x
func BenchmarkDownloads(b *testing.B) {
	const size = 64 << 20
	n := iptunneltest.New(b, iptunneltest.Options{AllowPrivate: true})
	o := n.StartOrigin(b, size)
	h3o := n.StartH3Origin(b, o.Data)
	startVPN(b, n, Config{Transport: "h3", Device: "mqvpn"})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(n.CertPEM)
	var pc *h3.Client
	if err := n.Client.Do(func() error {
		var err error
		pc, err = h3.Dial(context.Background(), iptunneltest.ProxyURL(), h3.Config{TLSConfig: &tls.Config{RootCAs: pool}})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	origin := net.JoinHostPort(iptunneltest.OriginIP, iptunneltest.OriginPort)

	run := func(name string, download func(b *testing.B) int64) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			var cpu time.Duration
			var total int64
			for b.Loop() {
				before := cpuTime()
				total += download(b)
				cpu += cpuTime() - before
			}
			b.ReportMetric(cpu.Seconds()/(float64(total)/1e9), "cpu-s/GB")
		})
	}
	run("tcp/connect-ip", func(b *testing.B) int64 {
		c, err := n.DialOrigin()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		return drain(b, c)
	})
	run("tcp/connect", func(b *testing.B) int64 {
		c, err := pc.DialTCP(context.Background(), origin)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		return drain(b, c)
	})
	run("h3/connect-ip", func(b *testing.B) int64 {
		n.CheckH3Download(b, h3o)
		return size
	})
	run("h3/connect-udp", func(b *testing.B) int64 {
		u, err := pc.ListenUDP(context.Background(), origin)
		if err != nil {
			b.Fatal(err)
		}
		defer u.Close()
		tr := u.HTTP3(&tls.Config{RootCAs: h3o.Pool()}, iptunneltest.InnerQUIC())
		defer tr.Close()
		req, _ := http.NewRequest(http.MethodGet, "https://"+origin+"/data", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		return drain(b, resp.Body)
	})
}

func drain(b *testing.B, r io.Reader) int64 {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
