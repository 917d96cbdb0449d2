package quickstart

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/proc"
)

// waitTimeout bounds the wait for a program's line. It only catches hangs:
// each line comes within a second or two even on a busy machine.
const waitTimeout = 60 * time.Second

// TestQuickStart runs README's Quick start, step by step.
func TestQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs masqued and masque-client as processes")
	}
	for _, tool := range []string{"bash", "python3", "openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing; make test installs what the Quick start needs", tool)
			}
			t.Skipf("the Quick start needs %s", tool)
		}
	}
	readme := readmeBlocks(t)
	d := newDemo(t)

	// 1. The proxy.
	proxy := d.start(readme.commands("masqued")[0] + " -listen 127.0.0.1:0")
	listening := proxy.wait(`^listening on (\S+)$`)
	proxy.wait(`^certificate \S+$`)
	d.learn("127.0.0.1:4433", listening[1])
	d.compare("masqued.out", readme.block("masqued.out"), strings.Join(proxy.lines(), "\n"))

	// 2. A TCP tunnel to a local HTTP server.
	origin := readme.commands("origin")
	d.run(origin[0])
	web := d.start(strings.Replace(origin[1], "http.server 8000", "http.server 0", 1))
	port := web.wait(`^Serving HTTP on 127\.0\.0\.1 port (\d+)`)[1]
	d.learn("127.0.0.1:8000", "127.0.0.1:"+port)
	d.learn("localhost:8000", "localhost:"+port)
	d.compare("fetch-tcp.out", readme.block("fetch-tcp.out"), d.run(readme.commands("fetch-tcp")[0]))

	// 3. HTTP/3 inside a CONNECT-UDP tunnel. Caddy's part is played by an
	// HTTP/3 server of this test's with the certificate the step makes.
	for _, c := range readme.commands("origin-h3") {
		if strings.HasPrefix(c, "openssl ") || strings.HasPrefix(c, "cat > ") {
			d.run(c)
		}
	}
	h3 := d.h3Origin(filepath.Join(d.demo, "origin.pem"), filepath.Join(d.demo, "origin-key.pem"), filepath.Join(d.demo, "www"))
	d.learn("localhost:8444", "localhost:"+h3)
	d.compare("fetch-udp.out", readme.block("fetch-udp.out"), d.run(readme.commands("fetch-udp")[0]))

	// README's table of client errors, in the same setting.
	errs := readme.table("client-errors")
	fetchTCP, fetchUDP := readme.commands("fetch-tcp")[0], readme.commands("fetch-udp")[0]
	d.fails(errs, "no `-ca` for masqued's self-signed certificate", strings.Replace(fetchTCP, " -ca ~/.local/state/masqued/cert.pem", "", 1))
	d.fails(errs, "the origin's certificate is not trusted (inside the tunnel)", strings.Replace(fetchUDP, " -origin-ca /tmp/masque-demo/origin.pem", "", 1))
	d.fails(errs, "nothing listens at a TCP target", strings.Replace(fetchTCP, "127.0.0.1:8000", closedPort(t, "tcp"), 1))
	refused := closedPort(t, "udp")
	d.fails(errs, "nothing listens at a UDP target", strings.Replace(fetchUDP, "localhost:8444", refused, 1), refused, "localhost:8444")
	silent := silentUDP(t)
	d.fails(errs, "a UDP target never answers", strings.Replace(fetchUDP, "localhost:8444", silent, 1), silent, "localhost:8444")

	// 4. curl, with masqued as its HTTPS proxy.
	for _, c := range readme.commands("curl") {
		d.compare("curl", "hello through masqued", d.run(c))
	}

	// 5. Any program, through the local entry point.
	serve := d.start(strings.NewReplacer("127.0.0.1:1080", "127.0.0.1:0", "127.0.0.1:8080", "127.0.0.1:0").
		Replace(readme.commands("serve")[0]))
	socks := serve.wait(`^socks5 listening on (\S+)$`)
	httpProxy := serve.wait(`^http listening on (\S+)$`)
	d.learn("127.0.0.1:1080", socks[1])
	d.learn("127.0.0.1:8080", httpProxy[1])
	d.compare("serve.out", readme.block("serve.out"), strings.Join(serve.lines(), "\n"))
	for _, c := range readme.commands("serve-curl") {
		if strings.HasPrefix(c, "curl ") {
			d.compare("serve-curl", "hello through masqued", d.run(c))
		}
	}
	serve.stop()

	// 6. Privacy Pass, after a restart: the restarted proxy keeps its
	// certificate, so the clients' -ca still holds.
	proxy.stop()
	d.fails(errs, "masqued is not running", fetchTCP)
	for row := range errs {
		t.Errorf("README's client-errors table has the row %q, which this test does not check", row)
	}
	pp := d.start(readme.commands("privacypass")[0] + " -listen 127.0.0.1:0 -pp-listen 127.0.0.1:0")
	// The issuer's line comes first: it is up before the proxy serves.
	issuer := pp.wait(`msg="privacypass: issuer and attester in this process" attester=https://([^/]+)/`)
	d.learn("127.0.0.1:4433", pp.wait(`^listening on (\S+)$`)[1])
	d.learn("127.0.0.1:4434", issuer[1])
	d.compare("privacypass.out", readme.block("privacypass.out"), strings.Join(pp.lines(), "\n"))
	d.compare("fetch-pp", "hello through masqued", d.run(readme.commands("fetch-pp")[0]))
	pp.stop()

	// Without -allow-private-targets, the fetches are refused as README says.
	safe := d.start(strings.Replace(readme.commands("masqued")[0], " -allow-private-targets", "", 1) + " -listen 127.0.0.1:0")
	d.learn("127.0.0.1:4433", safe.wait(`^listening on (\S+)$`)[1])
	refusal := regexp.MustCompile("fail with\\s+`([^`…]+)").FindStringSubmatch(readme.text)
	if refusal == nil {
		t.Fatal("README no longer says how the fetches fail without -allow-private-targets")
	}
	for _, name := range []string{"fetch-tcp", "fetch-udp"} {
		out, err := d.output(readme.commands(name)[0])
		if err == nil || !strings.Contains(d.normalize(out), refusal[1]) {
			t.Errorf("%s without -allow-private-targets: %v, printed\n%s\nwant %q", name, err, out, refusal[1])
		}
	}
}

// readme is README.md's text and its marked blocks.
type readme struct {
	t      *testing.T
	text   string
	blocks map[string]string
}

var markedBlock = regexp.MustCompile("(?m)^<!-- quickstart: ([a-z0-9.-]+) -->\n```[a-z]*\n((?s:.*?))```")

func readmeBlocks(t *testing.T) *readme {
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	r := &readme{t: t, text: string(b), blocks: map[string]string{}}
	for _, m := range markedBlock.FindAllStringSubmatch(r.text, -1) {
		r.blocks[m[1]] = strings.TrimRight(m[2], "\n")
	}
	return r
}

func (r *readme) block(name string) string {
	b, ok := r.blocks[name]
	if !ok {
		r.t.Fatalf("README has no block marked <!-- quickstart: %s -->", name)
	}
	return b
}

// table returns the rows of the two-column table marked name: the first
// column's text, and the second's with its backquotes dropped.
func (r *readme) table(name string) map[string]string {
	_, rest, ok := strings.Cut(r.text, "<!-- quickstart: "+name+" -->\n")
	if !ok {
		r.t.Fatalf("README has no table marked <!-- quickstart: %s -->", name)
	}
	rows := map[string]string{}
	for i, line := range strings.Split(rest, "\n") {
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		switch {
		case !strings.HasPrefix(line, "|"):
			return rows
		case i < 2: // the header and its rule
		case len(cells) != 2:
			r.t.Fatalf("README's %s table: the row %q has not two columns", name, line)
		default:
			rows[strings.TrimSpace(cells[0])] = strings.Trim(strings.TrimSpace(cells[1]), "`")
		}
	}
	return rows
}

// commands splits a block of shell into its commands: lines are joined at a
// trailing backslash, a here-document stays with its command, and blank
// lines and commands whose comment says "needs the internet" are dropped.
func (r *readme) commands(name string) []string {
	var cmds []string
	var cur strings.Builder
	heredoc := ""
	for _, line := range strings.Split(r.block(name), "\n") {
		switch {
		case heredoc != "":
			cur.WriteString("\n" + line)
			if line == heredoc {
				heredoc = ""
				cmds = append(cmds, cur.String())
				cur.Reset()
			}
			continue
		case strings.HasSuffix(line, `\`):
			cur.WriteString(strings.TrimSuffix(line, `\`))
			continue
		}
		cur.WriteString(line)
		if _, marker, ok := strings.Cut(line, "<<'"); ok {
			heredoc = strings.TrimSuffix(marker, "'")
			continue
		}
		if c := strings.TrimSpace(cur.String()); c != "" && !strings.Contains(c, "needs the internet") {
			cmds = append(cmds, c)
		}
		cur.Reset()
	}
	if len(cmds) == 0 {
		r.t.Fatalf("README's block %s has no command", name)
	}
	return cmds
}

// demo is the Quick start's machine: the programs built, a HOME of its own,
// and what README's fixed addresses and paths are in this run.
type demo struct {
	t    *testing.T
	bin  string
	home string
	demo string // README's /tmp/masque-demo
	env  []string

	mu    sync.Mutex
	subst [][2]string // README's text, this run's
}

func newDemo(t *testing.T) *demo {
	d := &demo{t: t, bin: t.TempDir(), home: t.TempDir(), demo: filepath.Join(t.TempDir(), "masque-demo")}
	for _, prog := range []string{"masqued", "masque-client"} {
		if err := proc.GoBuild(t.Context(), "cmd/"+prog, filepath.Join(d.bin, prog)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "HOME" && k != "XDG_STATE_HOME" && k != "PWD" {
			d.env = append(d.env, kv)
		}
	}
	d.env = append(d.env, "HOME="+d.home, "PYTHONUNBUFFERED=1", "PWD="+root)
	d.learn("/tmp/masque-demo", d.demo)
	return d
}

// learn records that README's text from stands for to in this run.
func (d *demo) learn(from, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, s := range d.subst {
		if s[0] == from {
			d.subst[i][1] = to
			return
		}
	}
	d.subst = append(d.subst, [2]string{from, to})
}

// command turns a README command into this run's.
func (d *demo) command(c string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	c = regexp.MustCompile(`\bgo run \./cmd/([a-z-]+)`).ReplaceAllString(c, filepath.Join(d.bin, "$1"))
	for _, s := range d.subst {
		c = strings.ReplaceAll(c, s[0], s[1])
	}
	return c
}

var (
	durations  = regexp.MustCompile(`\b(\d+(\.\d+)?(ns|µs|ms|s|m|h))+`)
	throughput = regexp.MustCompile(`\d+\.\d+ Mbit/s`)
)

// normalize turns a program's output into README's terms: this run's
// addresses and paths back into README's, durations and rates into
// placeholders.
func (d *demo) normalize(out string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.subst {
		out = strings.ReplaceAll(out, s[1], s[0])
	}
	out = strings.ReplaceAll(out, d.home, "/root")
	out = durations.ReplaceAllString(out, "DURATION")
	return throughput.ReplaceAllString(out, "N Mbit/s")
}

// compare checks that each line of want, README's sample output, is a line
// of got, in order; a want line that starts with "... " need only end a line.
func (d *demo) compare(name, want, got string) {
	d.t.Helper()
	gotLines := strings.Split(d.normalize(got), "\n")
	i := 0
	for _, w := range strings.Split(d.normalize(want), "\n") {
		w = strings.TrimSpace(w)
		suffix, partial := strings.CutPrefix(w, "... ")
		for i < len(gotLines) && !(gotLines[i] == w || partial && strings.HasSuffix(gotLines[i], suffix)) {
			i++
		}
		if i == len(gotLines) {
			d.t.Errorf("README's %s has the line\n\t%s\nwhich the programs did not print (in that order); they printed:\n%s", name, w, got)
			return
		}
		i++
	}
}

// fails runs c, which must fail with the message of row in README's table
// rows: each of the message's parts between its "…" is in c's output, after
// this run's text in pairs (old, new, ...) is replaced. The row is checked
// off rows.
func (d *demo) fails(rows map[string]string, row, c string, pairs ...string) {
	d.t.Helper()
	want, ok := rows[row]
	if !ok {
		d.t.Fatalf("README's table has no row %q", row)
	}
	delete(rows, row)
	out, err := d.output(c)
	got := d.normalize(strings.NewReplacer(pairs...).Replace(out))
	if err == nil {
		d.t.Errorf("%s: %q succeeded; README says it fails", row, d.command(c))
	}
	for _, part := range strings.Split(d.normalize(want), "…") {
		if part = strings.TrimSpace(part); !strings.Contains(got, part) {
			d.t.Errorf("%s: README says the error has\n\t%s\nbut the client printed\n%s", row, part, got)
		}
	}
}

// closedPort returns 127.0.0.1:PORT of a port nothing listens on now.
func closedPort(t *testing.T, network string) string {
	var addr string
	if network == "udp" {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		addr = c.LocalAddr().String()
		c.Close()
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	return addr
}

// silentUDP returns the address of a UDP socket that reads and never
// answers.
func silentUDP(t *testing.T) string {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return c.LocalAddr().String()
}

// output runs README command c to its end and returns its output, stdout
// and stderr together.
func (d *demo) output(c string) (string, error) {
	cmd := exec.Command("bash", "-c", d.command(c))
	cmd.Env, cmd.Dir = d.env, d.home
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(waitTimeout):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), errors.New("still running after " + waitTimeout.String())
	}
}

// run is output for a command that must succeed.
func (d *demo) run(c string) string {
	d.t.Helper()
	out, err := d.output(c)
	if err != nil {
		d.t.Fatalf("%s: %v\n%s", d.command(c), err, out)
	}
	return out
}

// daemon is a long-running command of the Quick start.
type daemon struct {
	t     *testing.T
	cmd   *exec.Cmd
	name  string
	ch    chan string   // its output lines, stdout and stderr together
	done  chan struct{} // closed when the reader has seen the output end
	mu    sync.Mutex
	seen  []string
	once  sync.Once
	ended chan error
}

// start starts README command c and stops it when the test ends.
func (d *demo) start(c string) *daemon {
	d.t.Helper()
	cmd := exec.Command("bash", "-c", "exec "+d.command(c))
	cmd.Env, cmd.Dir = d.env, d.home
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	p := &daemon{t: d.t, cmd: cmd, name: d.command(c), ch: make(chan string, 1024), done: make(chan struct{}), ended: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		pw.Close()
		p.ended <- err
	}()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case p.ch <- sc.Text():
			default: // nobody waits for lines this far on
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	d.t.Cleanup(p.stop)
	return p
}

// wait returns the submatches of the next line that matches re.
func (p *daemon) wait(re string) []string {
	p.t.Helper()
	want := regexp.MustCompile(re)
	timeout := time.After(waitTimeout)
	for {
		select {
		case l := <-p.ch:
			p.mu.Lock()
			p.seen = append(p.seen, l)
			p.mu.Unlock()
			if m := want.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-p.done:
			p.t.Fatalf("%s ended without a line matching %q; it printed:\n%s", p.name, re, strings.Join(p.lines(), "\n"))
		case <-timeout:
			p.t.Fatalf("%s printed no line matching %q in %v; it printed:\n%s", p.name, re, waitTimeout, strings.Join(p.lines(), "\n"))
		}
	}
}

// lines returns the lines wait has read so far.
func (p *daemon) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// stop ends the daemon with SIGTERM, as Ctrl-C in its terminal would.
func (p *daemon) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.ended:
		case <-time.After(waitTimeout):
			_ = p.cmd.Process.Kill()
			<-p.ended
		}
		<-p.done
	})
}

// h3Origin serves dir over HTTP/3 on 127.0.0.1 with the certificate in
// certFile and keyFile, and returns its port.
func (d *demo) h3Origin(certFile, keyFile, dir string) string {
	d.t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		d.t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		d.t.Fatal(err)
	}
	srv := &http3.Server{
		Handler:   http.FileServer(http.Dir(dir)),
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(c) }()
	d.t.Cleanup(func() {
		srv.Close()
		c.Close()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			d.t.Errorf("HTTP/3 origin: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	return port
}
