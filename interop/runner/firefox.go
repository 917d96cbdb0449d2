package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/masqued/masqued/internal/proc"
	"github.com/masqued/masqued/privacypass"
)

// The extension browser/firefox builds (masqued for Firefox): its add-on id,
// and the moz-extension UUID the runner's profiles give it, so that the
// runner can open its options page.
const (
	firefoxExtensionID   = "masqued-for-firefox@masqued.dev"
	firefoxExtensionUUID = "6d617371-7565-4400-8000-66697265666f"
	firefoxExtensionDir  = "browser/firefox"
	firefoxXPI           = "dist/masqued-for-firefox.xpi"
)

// firefoxPrefs make a headless Firefox load the unsigned extension from
// the profile, proxy loopback too (the origins are there), use HTTP/3 with
// the certificates the runner adds to the profile, and stay off the network
// otherwise.
var firefoxPrefs = map[string]any{
	"xpinstall.signatures.required":                           false,
	"extensions.autoDisableScopes":                            0,
	"extensions.enabledScopes":                                15,
	"extensions.startupScanScopes":                            15,
	"extensions.webextensions.uuids":                          `{"` + firefoxExtensionID + `":"` + firefoxExtensionUUID + `"}`,
	"network.proxy.allow_hijacking_localhost":                 true,
	"network.http.http3.enable":                               true,
	"network.http.http3.disable_when_third_party_roots_found": false,
	"marionette.port":                                         0, // a free port, written to MarionetteActivePort
	"browser.shell.checkDefaultBrowser":                       false,
	"browser.startup.homepage_override.mstone":                "ignore",
	"datareporting.policy.dataSubmissionEnabled":              false,
	"toolkit.telemetry.reportingpolicy.firstRun":              false,
	"app.update.enabled":                                      false,
	"app.normandy.enabled":                                    false,
	"extensions.update.enabled":                               false,
	"extensions.getAddons.cache.enabled":                      false,
	"browser.safebrowsing.malware.enabled":                    false,
	"browser.safebrowsing.phishing.enabled":                   false,
	"browser.safebrowsing.downloads.enabled":                  false,
	"network.captive-portal-service.enabled":                  false,
	"network.connectivity-service.enabled":                    false,
	"services.settings.server":                                "data:,#remote-settings-off",
	"browser.region.network.url":                              "",
	"network.dns.disablePrefetch":                             true,
	"network.prefetch-next":                                   false,
}

// findFirefox returns Debian's firefox-esr, or why there is none.
func findFirefox() (path, why string) {
	path, err := exec.LookPath("firefox-esr")
	if err != nil {
		return "", "firefox-esr is not installed (apt-get install firefox-esr)"
	}
	if _, err := exec.LookPath("certutil"); err != nil {
		return "", "certutil is not installed (apt-get install libnss3-tools), which puts the proxy's certificate into Firefox's profile"
	}
	return path, ""
}

// buildExtension builds the extension with npm (its bundle only: npm ci
// when node_modules is missing, then npm run build) and returns its XPI.
func buildExtension(ctx context.Context) (string, error) {
	root, err := proc.RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, firefoxExtensionDir)
	steps := [][]string{{"run", "build"}}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		steps = append([][]string{{"ci", "--no-audit", "--no-fund"}}, steps...)
	}
	for _, args := range steps {
		cmd := exec.CommandContext(ctx, "npm", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("npm %s in %s: %w: %s", strings.Join(args, " "), dir, err, tail(string(out), 5))
		}
	}
	return filepath.Join(dir, firefoxXPI), nil
}

// ffSettings are what the runner types into the extension's options page.
type ffSettings struct {
	proxy *proxy
	addr  netip.AddrPort // where the extension points Firefox; zero = proxy.addr
	mode  string         // auto (HTTP/3, then the HTTPS front), h3 or https
	// pp, when set, is the account whose key the extension mints tokens
	// with; poolSize is how many it keeps ready.
	pp       *ppAccount
	poolSize int
}

// firefox is a running headless Firefox with the extension, driven over
// Marionette.
type firefox struct {
	p       *proc.Process
	m       *marionette
	tab     string // the window handle pages load in
	options string // the extension's options page's handle
}

// startFirefox starts Firefox with a fresh profile that trusts the proxy's
// and the origins' certificates and holds the extension, then sets the
// extension up through its options page as a user would.
func (c *cellRun) startFirefox(ctx context.Context, s ffSettings) (*firefox, error) {
	if c.env.firefox == "" {
		return nil, errors.New(c.env.firefoxWhy)
	}
	if c.env.firefoxErr != nil {
		return nil, c.env.firefoxErr
	}
	profile := filepath.Join(c.dir, "firefox")
	if err := c.makeProfile(ctx, profile, s.proxy); err != nil {
		return nil, err
	}
	fp, err := c.start(ctx, c.env.firefox, "--headless", "--no-remote", "--marionette", "-remote-allow-system-access", "--profile", profile, "about:blank")
	if err != nil {
		return nil, err
	}
	m, err := dialMarionette(ctx, profile)
	if err != nil {
		return nil, err
	}
	f := &firefox{m: m, p: fp}
	c.quits = append(c.quits, f.quit)
	if err := m.call(ctx, "WebDriver:NewSession", map[string]any{"capabilities": map[string]any{}}, nil); err != nil {
		return nil, err
	}
	if err := m.call(ctx, "WebDriver:GetWindowHandle", nil, &struct{ Value *string }{&f.tab}); err != nil {
		return nil, err
	}
	if err := f.openOptions(ctx); err != nil {
		return nil, err
	}
	if err := f.configure(ctx, s); err != nil {
		return nil, err
	}
	return f, nil
}

// makeProfile writes user.js, the certificate database and the extension
// into a new profile directory.
func (c *cellRun) makeProfile(ctx context.Context, dir string, p *proxy) error {
	// certutil -N prompts forever for the password of a database that is
	// already there (from a failed run into the same directory).
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "extensions"), 0o755); err != nil {
		return err
	}
	var prefs strings.Builder
	for k, v := range firefoxPrefs {
		val := fmt.Sprint(v)
		if s, ok := v.(string); ok {
			val = fmt.Sprintf("%q", s)
		}
		fmt.Fprintf(&prefs, "user_pref(%q, %s);\n", k, val)
	}
	if err := os.WriteFile(filepath.Join(dir, "user.js"), []byte(prefs.String()), 0o644); err != nil {
		return err
	}
	xpi, err := os.ReadFile(c.env.firefoxXPI)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "extensions", firefoxExtensionID+".xpi"), xpi, 0o644); err != nil {
		return err
	}
	// Both certificates are self-signed server certificates. Firefox's
	// verifier (mozilla::pkix) ignores NSS's trusted-peer flag ("P": the
	// handshake fails with bad_certificate); a self-signed server
	// certificate trusted as its own anchor ("C") passes.
	db := "sql:" + dir
	if _, _, err := c.exec(ctx, "certutil", "-N", "-d", db, "--empty-password"); err != nil {
		return err
	}
	for name, file := range map[string]string{"masqued": p.certFile, "origins": c.env.origins.caFile} {
		if _, _, err := c.exec(ctx, "certutil", "-A", "-d", db, "-n", name, "-t", "C,,", "-i", file); err != nil {
			return err
		}
	}
	return nil
}

// openOptions opens the extension's options page in a tab of its own.
// Content scripts may not navigate to moz-extension: pages, so the tab is
// opened from the browser's chrome with the system principal, as the
// add-ons manager does.
func (f *firefox) openOptions(ctx context.Context) error {
	page := "moz-extension://" + firefoxExtensionUUID + "/options.html"
	if err := f.m.call(ctx, "Marionette:SetContext", map[string]string{"value": "chrome"}, nil); err != nil {
		return err
	}
	err := f.m.script(ctx, `const w = Services.wm.getMostRecentWindow("navigator:browser");
w.gBrowser.addTab(arguments[0], {triggeringPrincipal: Services.scriptSecurityManager.getSystemPrincipal()});`, nil, page)
	if err != nil {
		return fmt.Errorf("opening %s: %w", page, err)
	}
	if err := f.m.call(ctx, "Marionette:SetContext", map[string]string{"value": "content"}, nil); err != nil {
		return err
	}
	var handles []string
	if err := f.m.call(ctx, "WebDriver:GetWindowHandles", nil, &handles); err != nil {
		return err
	}
	for _, h := range handles {
		if h != f.tab {
			f.options = h
		}
	}
	if f.options == "" {
		return errors.New("the options page's tab did not open")
	}
	if err := f.switchTo(ctx, f.options); err != nil {
		return err
	}
	return f.poll(ctx, "the options page", `return document.readyState == "complete" && document.getElementById("save") != null`)
}

// configure fills in the options page and saves; the page says "saved"
// once the extension applied the settings.
func (f *firefox) configure(ctx context.Context, s ffSettings) error {
	addr := s.addr
	if !addr.IsValid() {
		addr = s.proxy.addr
	}
	fields := map[string]any{
		"enabled":  true,
		"proxy":    addr.String(),
		"template": "/.well-known/masque/udp/{target_host}/{target_port}/",
		"mode":     s.mode,
	}
	if s.pp != nil {
		key, err := privacypass.ReadAPIKey(s.pp.keyFile)
		if err != nil {
			return err
		}
		fields["account-key"], fields["attester"], fields["directory"] = key, s.pp.attester, s.pp.directory
		fields["pool-size"] = fmt.Sprint(s.poolSize)
	}
	if err := f.switchTo(ctx, f.options); err != nil {
		return err
	}
	err := f.m.script(ctx, `for (const [id, v] of Object.entries(arguments[0])) {
  const e = document.getElementById(id);
  if (!e) throw new Error("the options page has no #" + id);
  if (e.type == "checkbox") e.checked = v; else e.value = v;
  e.dispatchEvent(new Event("input", {bubbles: true}));
  e.dispatchEvent(new Event("change", {bubbles: true}));
}
document.getElementById("status").removeAttribute("data-state");
document.getElementById("save").click();`, nil, fields)
	if err != nil {
		return fmt.Errorf("filling in the options page: %w", err)
	}
	var state []string
	if err := f.pollValue(ctx, "the settings saved", `const s = document.getElementById("status");
return ["saved", "error"].includes(s.dataset.state) ? [s.dataset.state, s.textContent] : null`, &state); err != nil {
		return err
	}
	if state[0] != "saved" {
		return fmt.Errorf("the options page refused the settings: %s", state[1])
	}
	return nil
}

// ffTokens is the extension's token pool, as its options page shows it.
type ffTokens struct {
	Pooled, Minted, Presented, Groups int
	Error                             string
}

// tokens reads the options page's token counts.
func (f *firefox) tokens(ctx context.Context) (ffTokens, error) {
	var t ffTokens
	if err := f.switchTo(ctx, f.options); err != nil {
		return t, err
	}
	err := f.m.script(ctx, `const d = document.getElementById("tokens").dataset;
return {Pooled: +d.pooled, Minted: +d.minted, Presented: +d.presented, Groups: +d.groups, Error: d.error || ""}`, &t)
	return t, err
}

// waitTokens waits until the options page's token counts satisfy ok, or
// its context ends. The page updates them twice a second.
func (f *firefox) waitTokens(ctx context.Context, what string, ok func(ffTokens) bool) (ffTokens, error) {
	for {
		t, err := f.tokens(ctx)
		if err != nil || ok(t) {
			return t, err
		}
		select {
		case <-ctx.Done():
			return t, fmt.Errorf("waiting for the extension's tokens: %s; they are %+v: %w", what, t, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ffCheck is the result of the options page's "Check the proxy".
type ffCheck struct {
	NoToken, Fresh, Replay string
	OK                     bool
}

// check runs the options page's self-test of the proxy's token checks
// against url.
func (f *firefox) check(ctx context.Context, url string) (ffCheck, error) {
	var r ffCheck
	if err := f.switchTo(ctx, f.options); err != nil {
		return r, err
	}
	err := f.m.script(ctx, `document.getElementById("check-url").value = arguments[0];
document.getElementById("check-result").removeAttribute("data-state");
document.getElementById("check").click();`, nil, url)
	if err != nil {
		return r, err
	}
	var raw string
	if err := f.pollValue(ctx, "the proxy check", `const e = document.getElementById("check-result");
return e.dataset.state == "done" ? e.dataset.result : null`, &raw); err != nil {
		return r, err
	}
	var v struct {
		NoToken string `json:"noToken"`
		Fresh   string `json:"fresh"`
		Replay  string `json:"replay"`
		OK      bool   `json:"ok"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return r, fmt.Errorf("the check's result %q: %w", raw, err)
	}
	return ffCheck{v.NoToken, v.Fresh, v.Replay, v.OK}, nil
}

// load navigates the page tab to url and returns the DOM and, for a page
// Firefox could not load, the error code of its error page (such as
// proxyConnectFailure).
func (f *firefox) load(ctx context.Context, url string) (dom, loadErr string, err error) {
	if err := f.switchTo(ctx, f.tab); err != nil {
		return "", "", err
	}
	var me *marionetteError
	if err := f.m.call(ctx, "WebDriver:Navigate", map[string]string{"url": url}, nil); errors.As(err, &me) && strings.Contains(me.Message, "about:neterror") {
		loadErr = neterror(me.Message)
	} else if err != nil {
		return "", "", err
	}
	err = f.m.script(ctx, `return document.documentElement.outerHTML`, &dom)
	return dom, loadErr, err
}

// neterror is the e= code of an about:neterror URL in a message, or the
// message.
func neterror(msg string) string {
	_, u, ok := strings.Cut(msg, "about:neterror?")
	if !ok {
		return msg
	}
	u, _, _ = strings.Cut(u, " ")
	q, err := url.ParseQuery(u)
	if err != nil || q.Get("e") == "" {
		return msg
	}
	return q.Get("e")
}

func (f *firefox) switchTo(ctx context.Context, handle string) error {
	return f.m.call(ctx, "WebDriver:SwitchToWindow", map[string]any{"handle": handle, "focus": true}, nil)
}

// poll runs js every 100 ms until it returns true.
func (f *firefox) poll(ctx context.Context, what, js string) error {
	var ok bool
	return f.pollValue(ctx, what, `return (() => {`+js+`})() ? true : null`, &ok)
}

// pollValue runs js every 100 ms until it returns something other than
// null, and decodes that into v.
func (f *firefox) pollValue(ctx context.Context, what, js string, v any) error {
	for {
		var raw json.RawMessage
		if err := f.m.script(ctx, js, &raw); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if len(raw) > 0 && string(raw) != "null" {
			return json.Unmarshal(raw, v)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// quit ends Firefox through Marionette and gives it 20 seconds (it takes
// about one) to exit by itself, as SIGTERM makes it exit unclean.
func (f *firefox) quit() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = f.m.call(ctx, "Marionette:Quit", nil, nil)
	f.m.close()
	select {
	case <-f.p.Exited():
	case <-ctx.Done():
	}
}
