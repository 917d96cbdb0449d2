package iptunnel_test

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	connectip "github.com/quic-go/connect-ip-go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/yosida95/uritemplate/v3"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/tun"
	"github.com/masqued/masqued/iptunnel/iptunneltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The client in these tests is connect-ip-go's (interop): its Conn over one
// QUIC connection from the client namespace, and a TUN device there with
// the assigned addresses and a route to the origin's network.

func dialConn(t *testing.T, n *iptunneltest.Net) (*connectip.Conn, error) {
	pool, err := certs.Pool(n.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx := iptunneltest.WaitContext(t)
	var qc *quic.Conn
	err = n.Client.Do(func() error {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return err
		}
		t.Cleanup(func() { udp.Close() })
		raddr := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(iptunneltest.ProxyAddr))
		qc, err = quic.Dial(ctx, udp, raddr, &tls.Config{RootCAs: pool, NextProtos: []string{http3.NextProtoH3}},
			&quic.Config{EnableDatagrams: true, InitialPacketSize: 1350})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	cc := connectip.NewClientConn((&http3.Transport{EnableDatagrams: true}).NewClientConn(qc))
	req, err := connectip.NewRequest(ctx, uritemplate.MustNew(iptunneltest.ProxyURL()+"/.well-known/masque/ip/*/*/"))
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := cc.Dial(req)
	return conn, err
}

// dialVPN connects connect-ip-go's client and routes the origin's network
// through it; it returns the assigned addresses.
func dialVPN(t *testing.T, n *iptunneltest.Net) []connectip.AssignedAddress {
	conn, err := dialConn(t, n)
	if err != nil {
		t.Fatal(err)
	}
	ctx := iptunneltest.WaitContext(t)
	addrs, err := conn.ReceiveAddressAssignment(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Routes(ctx); err != nil {
		t.Fatal(err)
	}
	var dev *tun.Device
	err = n.Client.Do(func() error {
		var err error
		if dev, err = tun.Open("mqc"); err != nil {
			return err
		}
		var ps []netip.Prefix
		for _, a := range addrs {
			ps = append(ps, a.IPPrefix)
		}
		if err := dev.Up(1280, ps...); err != nil {
			return err
		}
		return dev.AddRoute(netip.MustParsePrefix(iptunneltest.OriginNet))
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { // device to tunnel
		b := make([]byte, 2000)
		for {
			n, err := dev.Read(b)
			if err != nil {
				return
			}
			if icmpPkt, err := conn.WritePacket(b[:n]); err == nil && len(icmpPkt) > 0 {
				_, _ = dev.Write(icmpPkt)
			}
		}
	})
	wg.Go(func() { // tunnel to device
		b := make([]byte, 2000)
		for {
			n, err := conn.ReadPacket(b)
			if err != nil {
				return
			}
			_, _ = dev.Write(b[:n])
		}
	})
	t.Cleanup(func() {
		conn.Close()
		dev.Close()
		wg.Wait()
	})
	return addrs
}

func TestNetnsDownloadAndPing(t *testing.T) {
	n := iptunneltest.New(t, iptunneltest.Options{AllowPrivate: true})
	o := n.StartOrigin(t, 8<<20)
	h3 := n.StartH3Origin(t, o.Data)
	addrs := dialVPN(t, n)
	var got4, got6 bool
	for _, a := range addrs {
		got4 = got4 || a.IPPrefix.Addr().Is4()
		got6 = got6 || a.IPPrefix.Addr().Is6()
	}
	if !got4 || !got6 {
		t.Fatalf("assigned %v, want an IPv4 and an IPv6 address", addrs)
	}
	t.Run("ping", func(t *testing.T) { n.Ping(t) })
	t.Run("tcp-download", func(t *testing.T) { n.CheckDownload(t, o) })
	t.Run("h3-download", func(t *testing.T) { n.CheckH3Download(t, h3) })
}

func TestNetnsPrivateDestinationDropped(t *testing.T) {
	n := iptunneltest.New(t, iptunneltest.Options{})
	o := n.StartOrigin(t, 1024)
	dialVPN(t, n)
	c, err := n.DialOrigin()
	if err == nil {
		c.Close()
		t.Fatal("connected to a private destination through CONNECT-IP")
	}
	if got := n.Dropped(t, "prohibited"); got == 0 {
		t.Fatal("no packet counted as dropped for the policy")
	}
	if p := o.Peers(); len(p) != 0 {
		t.Fatalf("origin saw connections from %v", p)
	}
}

// TestNetnsMTUBelow1280 runs the proxy on a QUIC path too small for
// 1280-byte packets: RFC 9484 §10.1 has it end the tunnel.
func TestNetnsMTUBelow1280(t *testing.T) {
	n := iptunneltest.New(t, iptunneltest.Options{AllowPrivate: true, QUIC: &quic.Config{
		InitialPacketSize: 1200, DisablePathMTUDiscovery: true, EnableDatagrams: true}})
	conn, err := dialConn(t, n)
	if err != nil {
		// The probe follows the 2xx at once, so the stream's reset may
		// reach the client before the response does.
		if !strings.Contains(err.Error(), "H3_REQUEST_CANCELLED") {
			t.Fatalf("dial failed, but not by the stream's reset: %v", err)
		}
		return
	}
	defer conn.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.ReadPacket(make([]byte, 2000))
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("tunnel carried a packet on a path below 1280 bytes")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel still open on a path below 1280 bytes")
	}
}
