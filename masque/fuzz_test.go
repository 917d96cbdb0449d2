package masque_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/masqued/masqued/masque"
)

// checkTarget asserts what every parsed target must satisfy: a port in
// 1..65535, a host NewTarget accepts as it is, and a String form that
// ParseAuthority reads back to the same target. A failure must be a 400
// with no target.
func checkTarget(t *testing.T, in string, got masque.Target, err error) {
	t.Helper()
	if err != nil {
		if got != (masque.Target{}) {
			t.Fatalf("%q: target %+v returned with error %v", in, got, err)
		}
		if status, e := masque.StatusOf(err); status != http.StatusBadRequest || e.Kind != masque.StatusHTTPRequestError {
			t.Fatalf("%q: %v maps to %d %s, want 400", in, err, status, e.Kind)
		}
		return
	}
	if got.Port == 0 {
		t.Fatalf("%q: port 0 accepted", in)
	}
	if again, err := masque.NewTarget(got.Host, strconv.Itoa(int(got.Port))); err != nil || again != got {
		t.Fatalf("%q: NewTarget(%q) = %+v, %v; want %+v", in, got.Host, again, err, got)
	}
	if again, err := masque.ParseAuthority(got.String()); err != nil || again != got {
		t.Fatalf("%q: ParseAuthority(%q) = %+v, %v; want %+v", in, got.String(), again, err, got)
	}
}

func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"example.com:443", "[2001:db8::1]:443", "192.0.2.1:1", "[fe80::1%eth0]:443", "1.2.3:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := masque.ParseAuthority(s)
		checkTarget(t, s, got, err)
	})
}

// FuzzTemplateMatch matches a request URI against the default and a
// query-form template. Besides the target invariants, a matched target must
// expand back to a URI that matches the same target.
func FuzzTemplateMatch(f *testing.F) {
	templates := []*masque.Template{mustTemplate(f, masque.DefaultUDPTemplate), mustTemplate(f, queryTemplate)}
	for _, s := range []string{
		"/.well-known/masque/udp/example.com/443/",
		"/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/",
		"/masque?target_host=192.0.2.1&target_port=53",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		for _, tmpl := range templates {
			got, err := tmpl.Match(uri)
			checkTarget(t, uri, got, err)
			if err != nil {
				continue
			}
			u, err := tmpl.Expand("proxy.test", got)
			if err != nil {
				t.Fatalf("%q: Expand(%+v): %v", uri, got, err)
			}
			if again, err := tmpl.Match(u.RequestURI()); err != nil || again != got {
				t.Fatalf("%q: expanded to %q, which matches %+v, %v; want %+v", uri, u.RequestURI(), again, err, got)
			}
		}
	})
}
