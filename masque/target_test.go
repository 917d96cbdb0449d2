package masque_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/masqued/masqued/masque"
)

// wantBadRequest fails unless err maps to 400 http_request_error.
func wantBadRequest(t testing.TB, err error) {
	t.Helper()
	if status, e := masque.StatusOf(err); err == nil || status != http.StatusBadRequest || e.Kind != masque.StatusHTTPRequestError {
		t.Fatalf("%v maps to %d %s, want 400 %s", err, status, e.Kind, masque.StatusHTTPRequestError)
	}
}

func TestParseAuthority(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := strings.Join([]string{label63, label63, label63, strings.Repeat("b", 61)}, ".")
	good := []struct {
		in   string
		want masque.Target
	}{
		{"example.com:443", masque.Target{Host: "example.com", Port: 443}},
		{"Example.COM:443", masque.Target{Host: "example.com", Port: 443}},
		{"example.com.:443", masque.Target{Host: "example.com.", Port: 443}},
		{"[2001:db8::1]:443", masque.Target{Host: "2001:db8::1", Port: 443}},
		{"[2001:DB8::1]:443", masque.Target{Host: "2001:db8::1", Port: 443}},
		{"[::ffff:192.0.2.1]:80", masque.Target{Host: "::ffff:192.0.2.1", Port: 80}},
		{"192.0.2.1:1", masque.Target{Host: "192.0.2.1", Port: 1}},
		{"example.com:65535", masque.Target{Host: "example.com", Port: 65535}},
		{"_sip._udp.example-1.com:5060", masque.Target{Host: "_sip._udp.example-1.com", Port: 5060}},
		{"localhost:8080", masque.Target{Host: "localhost", Port: 8080}},
		{label63 + ".example:443", masque.Target{Host: label63 + ".example", Port: 443}},
		{name253 + ":443", masque.Target{Host: name253, Port: 443}},
		{name253 + ".:443", masque.Target{Host: name253 + ".", Port: 443}},
		{"1.2.3.com:80", masque.Target{Host: "1.2.3.com", Port: 80}},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			got, err := masque.ParseAuthority(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseAuthority = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	bad := []struct{ name, in string }{
		{"no port", "example.com"},
		{"empty port", "example.com:"},
		{"port 0", "example.com:0"},
		{"port 65536", "example.com:65536"},
		{"port 100000", "example.com:100000"},
		{"port +1", "example.com:+1"},
		{"port -1", "example.com:-1"},
		{"port 08", "example.com:08"},
		{"port 0443", "example.com:0443"},
		{"port hex", "example.com:0x1bb"},
		{"port name", "example.com:https"},
		{"empty host", ":443"},
		{"empty", ""},
		{"unbracketed v6", "2001:db8::1:443"},
		{"unbracketed v6 with zone", "fe80::1%eth0:443"},
		{"bracketed name", "[example.com]:443"},
		{"bracketed v4", "[192.0.2.1]:443"},
		{"zone", "[fe80::1%eth0]:443"},
		{"encoded zone", "[fe80::1%25eth0]:443"},
		{"label over 63", strings.Repeat("a", 64) + ".example:443"},
		{"name over 253", name253 + "b:443"},
		{"all-numeric name", "1.2.3:80"},
		{"all-numeric label", "123:80"},
		{"v4 with leading zero", "010.0.0.1:80"},
		{"empty label", "a..example:443"},
		{"leading dot", ".example.com:443"},
		{"only a dot", ".:443"},
		{"two trailing dots", "example.com..:443"},
		{"label starts with hyphen", "-a.example:443"},
		{"label ends with hyphen", "a-.example:443"},
		{"bad char $", "exa$mple.com:443"},
		{"bad char /", "ex/a.com:443"},
		{"bad char @", "user@example.com:443"},
		{"non-ASCII", "bücher.example:443"},
		{"space in host", "exa mple.com:443"},
		{"space before port", "example.com: 443"},
		{"space after port", "example.com:443 "},
		{"two ports", "example.com:443:443"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got, err := masque.ParseAuthority(tt.in)
			if got != (masque.Target{}) {
				t.Errorf("ParseAuthority(%q) returned %+v with its error", tt.in, got)
			}
			wantBadRequest(t, err)
		})
	}
}

func TestParseTemplate(t *testing.T) {
	good := []string{
		masque.DefaultUDPTemplate,
		"https://proxy.example/masque{?target_host,target_port}",
		"https://proxy.example:8443/masque/{target_host}/{target_port}",
		"https://192.0.2.1:4433/udp/{target_port}/{target_host}/",
		"https://{proxy}/masque?h={target_host}&p={target_port}",
	}
	for _, s := range good {
		t.Run(s, func(t *testing.T) {
			tmpl, err := masque.ParseTemplate(s)
			if err != nil {
				t.Fatal(err)
			}
			if tmpl.String() != s {
				t.Fatalf("String() = %q, want %q", tmpl.String(), s)
			}
		})
	}
	bad := []struct{ name, in string }{
		{"http scheme", "http://{proxy}/.well-known/masque/udp/{target_host}/{target_port}/"},
		{"no scheme", "{proxy}/.well-known/masque/udp/{target_host}/{target_port}/"},
		{"missing target_port", "https://{proxy}/.well-known/masque/udp/{target_host}/"},
		{"missing target_host", "https://{proxy}/.well-known/masque/udp/{target_port}/"},
		{"misspelled variable", "https://{proxy}/masque/{target_host}/{targetport}/"},
		{"missing path", "https://proxy.example"},
		{"missing authority", "https:///masque/{target_host}/{target_port}"},
		{"variables only in authority", "https://{target_host}:{target_port}/"},
		{"{foo} in authority", "https://{foo}/masque/{target_host}/{target_port}"},
		{"{proxy} with port", "https://{proxy}:443/masque/{target_host}/{target_port}"},
		{"unclosed brace", "https://{proxy}/masque/{target_host/{target_port}"},
		{"unopened brace", "https://{proxy}/masque/target_host}/{target_port}"},
		{"nested braces", "https://{proxy}/masque/{{target_host}}/{target_port}"},
		{"empty expression", "https://{proxy}/masque/{}/{target_host}/{target_port}"},
		{"empty", ""},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if tmpl, err := masque.ParseTemplate(tt.in); err == nil {
				t.Fatalf("ParseTemplate(%q) = %v, want an error", tt.in, tmpl)
			}
		})
	}
}

func mustTemplate(t testing.TB, s string) *masque.Template {
	t.Helper()
	tmpl, err := masque.ParseTemplate(s)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

const queryTemplate = "https://proxy.example/masque{?target_host,target_port}"

func TestTemplateMatch(t *testing.T) {
	def := mustTemplate(t, masque.DefaultUDPTemplate)
	query := mustTemplate(t, queryTemplate)
	const wk = "/.well-known/masque/udp/"
	good := []struct {
		name string
		tmpl *masque.Template
		uri  string
		want masque.Target
	}{
		{"name", def, wk + "example.com/443/", masque.Target{Host: "example.com", Port: 443}},
		{"upper-case name", def, wk + "EXAMPLE.com/443/", masque.Target{Host: "example.com", Port: 443}},
		{"ipv4", def, wk + "192.0.2.1/53/", masque.Target{Host: "192.0.2.1", Port: 53}},
		{"ipv6 percent-encoded", def, wk + "2001%3Adb8%3A%3A1/443/", masque.Target{Host: "2001:db8::1", Port: 443}},
		{"ipv6 lower-case escapes", def, wk + "2001%3adb8%3a%3a1/443/", masque.Target{Host: "2001:db8::1", Port: 443}},
		{"port 65535", def, wk + "example.com/65535/", masque.Target{Host: "example.com", Port: 65535}},
		{"query form", query, "/masque?target_host=example.com&target_port=443", masque.Target{Host: "example.com", Port: 443}},
		{"query form ipv6", query, "/masque?target_host=2001%3Adb8%3A%3A1&target_port=443", masque.Target{Host: "2001:db8::1", Port: 443}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.tmpl.Match(tt.uri)
			if err != nil || got != tt.want {
				t.Fatalf("Match(%q) = %+v, %v; want %+v", tt.uri, got, err, tt.want)
			}
		})
	}
	bad := []struct {
		name string
		tmpl *masque.Template
		uri  string
	}{
		{"encoded slash", def, wk + "ex%2Fa/443/"},
		{"raw slash", def, wk + "ex/a/443/"},
		{"empty host", def, wk + "/443/"},
		{"empty port", def, wk + "example.com//"},
		{"port 0", def, wk + "example.com/0/"},
		{"port 65536", def, wk + "example.com/65536/"},
		{"port with leading zero", def, wk + "example.com/0443/"},
		{"non-numeric port", def, wk + "example.com/https/"},
		{"unencoded ipv6", def, wk + "2001:db8::1/443/"},
		{"bracketed ipv6", def, wk + "%5B2001%3Adb8%3A%3A1%5D/443/"},
		{"ipv6 zone", def, wk + "fe80%3A%3A1%25eth0/443/"},
		{"encoded space", def, wk + "exa%20mple.com/443/"},
		{"bad escape", def, wk + "%zz/443/"},
		{"all-numeric name", def, wk + "1.2.3/80/"},
		{"missing trailing slash", def, wk + "example.com/443"},
		{"other path", def, "/masque/udp/example.com/443/"},
		{"extra segment", def, wk + "example.com/443/extra"},
		{"root", def, "/"},
		{"empty", def, ""},
		{"query form, other path", query, "/other?target_host=example.com&target_port=443"},
		{"query form, port missing", query, "/masque?target_host=example.com"},
		{"query form, bad port", query, "/masque?target_host=example.com&target_port=0"},
		{"query form, encoded slash", query, "/masque?target_host=ex%2Fa&target_port=443"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.tmpl.Match(tt.uri)
			if got != (masque.Target{}) {
				t.Errorf("Match(%q) returned %+v with its error", tt.uri, got)
			}
			wantBadRequest(t, err)
		})
	}
}

func TestTemplateExpandMatch(t *testing.T) {
	templates := []struct {
		tmpl          string
		wantAuthority string // the URL's host given proxy authority "proxy.test:4433"
	}{
		{masque.DefaultUDPTemplate, "proxy.test:4433"},
		{"https://{proxy}/masque{?target_host,target_port}", "proxy.test:4433"},
		{"https://masque.example:8443/udp/{target_port}/{target_host}", "masque.example:8443"},
	}
	targets := []masque.Target{
		{Host: "192.0.2.1", Port: 53},
		{Host: "2001:db8::1", Port: 443},
		{Host: "::ffff:192.0.2.1", Port: 1},
		{Host: "example.com", Port: 65535},
		{Host: "_a.example-1.com.", Port: 8080},
	}
	for _, tc := range templates {
		tmpl := mustTemplate(t, tc.tmpl)
		for _, target := range targets {
			t.Run(tc.tmpl+"/"+target.String(), func(t *testing.T) {
				u, err := tmpl.Expand("proxy.test:4433", target)
				if err != nil {
					t.Fatal(err)
				}
				if u.Scheme != "https" || u.Host != tc.wantAuthority {
					t.Fatalf("Expand = %s, want https://%s/…", u, tc.wantAuthority)
				}
				if strings.Contains(u.RequestURI(), ":") {
					t.Fatalf("request URI %q holds an unencoded colon", u.RequestURI())
				}
				got, err := tmpl.Match(u.RequestURI())
				if err != nil || got != target {
					t.Fatalf("Match(%q) = %+v, %v; want %+v", u.RequestURI(), got, err, target)
				}
			})
		}
	}
}

func TestTargetAddr(t *testing.T) {
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"192.0.2.1", true},
		{"2001:db8::1", true},
		{"example.com", false},
		{"fe80::1%eth0", false},
	} {
		a, ok := masque.Target{Host: tt.host, Port: 1}.Addr()
		if ok != tt.ok || (ok && a.String() != tt.host) {
			t.Errorf("Target{%q}.Addr() = %v, %v; want ok=%v", tt.host, a, ok, tt.ok)
		}
	}
}
