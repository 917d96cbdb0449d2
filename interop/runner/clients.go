package runner

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/masqued/masqued/internal/proc"
)

// client is a program the runner drives through the cases.
type client struct {
	name      string
	needs     feature // of the server
	program   string  // what env builds or finds
	transport string  // masque-client's -via transport
}

var clients = []*client{
	{name: "masque-client/h3", program: "masque-client", transport: "h3"},
	{name: "masque-client/h2", program: "masque-client", transport: "h2", needs: tcpFront},
	{name: "masque-client/h1", program: "masque-client", transport: "h1", needs: tcpFront},
	{name: "masque-go", program: "masquego"},
	{name: "curl", program: "curl", needs: tcpFront | connect},
	{name: "chromium", program: "chromium", needs: tcpFront | connect},
}

// cellRun is one cell while it runs.
type cellRun struct {
	env  *env
	cell *Cell
	id   string // names the cell at the origins
	dir  string // its files
	log  io.Writer

	stops []*proc.Process // started by start, stopped by stopAll
}

// start starts a long-running program for the cell; the cell stops it and
// logs its output when it ends.
func (c *cellRun) start(ctx context.Context, path string, args ...string) (*proc.Process, error) {
	fmt.Fprintf(c.log, "$ %s %s &\n", filepath.Base(path), redact(args))
	p, err := proc.Start(ctx, path, args...)
	if err != nil {
		return nil, err
	}
	c.stops = append(c.stops, p)
	return p, nil
}

// exec runs a program to its end, logs what it printed and returns its
// stdout and stderr. Its error, for a non-zero exit, ends with the last
// lines of stderr.
func (c *cellRun) exec(ctx context.Context, path string, args ...string) (string, string, error) {
	fmt.Fprintf(c.log, "$ %s %s\n", filepath.Base(path), redact(args))
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	fmt.Fprintf(c.log, "-- stdout (%d bytes):\n%s\n-- stderr:\n%s\n-- %v\n", stdout.Len(), clip(stdout.String()), redactLines(stderr.String()), errOr(err, "exit 0"))
	if err != nil {
		err = fmt.Errorf("%s: %w: %s", filepath.Base(path), err, tail(redactLines(stderr.String()), 3))
	}
	return stdout.String(), stderr.String(), err
}

// stopAll stops the cell's programs and logs their output. Its error
// reports a server that did not exit cleanly.
func (c *cellRun) stopAll() error {
	var errs []error
	for i := len(c.stops) - 1; i >= 0; i-- {
		p := c.stops[i]
		err := p.Stop()
		fmt.Fprintf(c.log, "-- %s stopped: %v; %s\n", p.Name(), errOr(err, "exit 0"), p.Output())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s did not exit cleanly", p.Name()))
		}
	}
	return errors.Join(errs...)
}

// redact joins a command line for the log, leaving out the tokens of
// Proxy-Authorization headers: logs never hold tokens.
func redact(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if name, _, ok := strings.Cut(a, ":"); ok && strings.EqualFold(name, "Proxy-Authorization") {
			a = name + ": [redacted]"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// redactLines leaves the tokens out of Proxy-Authorization header lines
// (curl -v shows the request headers).
func redactLines(s string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		if i := strings.Index(strings.ToLower(l), "proxy-authorization:"); i >= 0 {
			l = l[:i] + "Proxy-Authorization: [redacted]\n"
		}
		b.WriteString(l)
	}
	return b.String()
}

func errOr(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

// clip shortens long output for the log.
func clip(s string) string {
	if len(s) > 4096 {
		return s[:4096] + fmt.Sprintf("… (%d bytes more)", len(s)-4096)
	}
	return s
}

// tail is the last n non-empty lines of s, joined by " | ".
func tail(s string, n int) string {
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// masqueClient returns masque-client's flags for p over the client's
// transport with tunnel ("udp" or "tcp"), then extra.
func (c *cellRun) masqueClient(cl *client, p *proxy, tunnel string, extra ...string) []string {
	return append([]string{"-proxy", p.url, "-ca", p.certFile, "-origin-ca", c.env.origins.caFile,
		"-via", tunnel + "," + cl.transport, "-v", "-timeout", "20s"}, extra...)
}

// url is an origin URL for this cell.
func (c *cellRun) url(scheme string, addr netip.AddrPort, what string) string {
	return scheme + "://" + addr.String() + "/" + c.id + "/" + what
}

// checkEgress checks that the origins saw want requests or packets of the
// cell, all from the proxy's egress address.
func (c *cellRun) checkEgress(p *proxy, want int) error {
	saw := c.env.origins.saw(c.id)
	if len(saw) < want {
		return fmt.Errorf("the origins saw %d requests or packets of the cell, want %d", len(saw), want)
	}
	for _, a := range saw {
		if p.egress.IsValid() && a.Addr() != p.egress {
			return fmt.Errorf("the origin saw traffic from %s, not from the proxy's egress address %s", a.Addr(), p.egress)
		}
	}
	return nil
}

// checkSources checks that the origins saw the cell's traffic come from
// at least want source ports (on the egress address): one per tunnel.
func (c *cellRun) checkSources(p *proxy, want int) error {
	if err := c.checkEgress(p, want); err != nil {
		return err
	}
	ports := map[netip.AddrPort]bool{}
	for _, a := range c.env.origins.saw(c.id) {
		ports[a] = true
	}
	if len(ports) < want {
		return fmt.Errorf("the origin saw traffic from %d source ports, want one per tunnel: %d", len(ports), want)
	}
	return nil
}

// checkNone checks that nothing of the cell reached the origins.
func (c *cellRun) checkNone() error {
	if saw := c.env.origins.saw(c.id); len(saw) > 0 {
		return fmt.Errorf("the origins saw %d requests or packets of the cell from %s, want none", len(saw), saw[0])
	}
	return nil
}

// ChromiumArgs are the flags that make headless Chromium load pages through
// a proxy (proxyURL, such as https://127.0.0.1:4433), loopback included,
// trusting the certificates whose public keys hash to spkis (see SPKIHash),
// with a fresh profile in userDataDir and nothing else on the network.
func ChromiumArgs(proxyURL, userDataDir string, spkis ...string) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + userDataDir,
		"--proxy-server=" + proxyURL,
		"--proxy-bypass-list=<-loopback>", // proxy loopback too: the origins are local
		"--ignore-certificate-errors-spki-list=" + strings.Join(spkis, ","),
	}
}

// findChromium returns Debian's chromium, or why there is none.
func findChromium() (path, why string) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return "", "chromium is not installed (apt-get install chromium)"
	}
	return path, ""
}

// chromium loads url in headless Chromium through proxyURL, trusting the
// proxy's and the origins' certificates, and returns the page's DOM and the
// load error Chromium logged, if any (such as net::ERR_NO_SUPPORTED_PROXIES).
func (c *cellRun) chromium(ctx context.Context, p *proxy, proxyURL, url string) (dom, loadErr string, err error) {
	if c.env.chromium == "" {
		return "", "", errors.New(c.env.chromiumWhy)
	}
	var spkis []string
	for _, file := range []string{p.certFile, c.env.origins.caFile} {
		pemBytes, err := os.ReadFile(file)
		if err != nil {
			return "", "", err
		}
		spki, err := SPKIHash(pemBytes)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", file, err)
		}
		spkis = append(spkis, spki)
	}
	args := append(ChromiumArgs(proxyURL, filepath.Join(c.dir, "chromium"), spkis...),
		"--disable-quic", "--enable-logging=stderr", "--dump-dom", url)
	dom, stderr, err := c.exec(ctx, c.env.chromium, args...)
	if _, after, ok := strings.Cut(stderr, "Page load failed: "); ok {
		loadErr, _, _ = strings.Cut(after, "\n")
	}
	return dom, loadErr, err
}

// socksUDP sends packets through a SOCKS5 proxy's UDP ASSOCIATE (RFC 1928
// §7) to the echo origin and checks that each comes back.
func socksUDP(ctx context.Context, socks string, echo netip.AddrPort, cell string, n int) error {
	var d net.Dialer
	ctl, err := d.DialContext(ctx, "tcp", socks)
	if err != nil {
		return err
	}
	defer ctl.Close()
	if dl, ok := ctx.Deadline(); ok {
		ctl.SetDeadline(dl)
	}
	// No authentication; then UDP ASSOCIATE from any address.
	if _, err := ctl.Write([]byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return err
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(ctl, reply); err != nil {
		return fmt.Errorf("SOCKS5 UDP ASSOCIATE: %w", err)
	}
	if reply[1] != 0 || reply[3] != 0 || reply[5] != 1 {
		return fmt.Errorf("SOCKS5 UDP ASSOCIATE: reply % x", reply)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(reply[6:10])), binary.BigEndian.Uint16(reply[10:12]))
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		return err
	}
	defer uc.Close()
	header := append([]byte{0, 0, 0, 1}, echo.Addr().AsSlice()...)
	header = binary.BigEndian.AppendUint16(header, echo.Port())
	buf := make([]byte, 2048)
	for i := range n {
		payload := fmt.Sprintf("%s packet %d", cell, i)
		var got string
		// UDP may lose a packet, even on loopback while a tunnel opens.
		for try := 0; try < 5 && got != payload; try++ {
			if _, err := uc.Write(append(header, payload...)); err != nil {
				return err
			}
			uc.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, err := uc.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			if m > len(header) {
				got = string(buf[len(header):m])
			}
		}
		if got != payload {
			return fmt.Errorf("packet %d did not come back from the echo origin", i)
		}
	}
	return nil
}
