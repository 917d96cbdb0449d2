package tunnel

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLayering keeps imports pointing one way (cmd → fronts → core →
// masque): the core must not know its transport, the shared MASQUE
// vocabulary and the client side must not pull in the server, and nothing
// the proxy runs may import the interop suite. A pkg ending in /... covers
// every package under it.
func TestLayering(t *testing.T) {
	// serverSide is what client-side packages must not import: the
	// server's code and its metrics.
	serverSide := []string{
		"github.com/masqued/masqued/tunnel",
		"github.com/masqued/masqued/h3proxy",
		"github.com/masqued/masqued/h2proxy",
		"github.com/masqued/masqued/privacypass/ppserver",
		"github.com/prometheus",
	}
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/masqued/masqued/tunnel", []string{
			"github.com/masqued/masqued/h3proxy",
			"github.com/masqued/masqued/h2proxy",
			"github.com/masqued/masqued/client",
			"github.com/quic-go/quic-go/http3",
			"golang.org/x/net/http2",
		}},
		// The public vocabulary is what clients build on: it knows neither
		// the server core nor its metrics nor a front.
		{"github.com/masqued/masqued/masque", serverSide},
		{"github.com/masqued/masqued/masque/connectip", serverSide},
		{"github.com/masqued/masqued/masque/capsule", slices.Concat(serverSide, []string{
			"github.com/quic-go/quic-go/http3",
		})},
		// Client-side code builds on that vocabulary alone.
		{"github.com/masqued/masqued/client/...", serverSide},
		{"github.com/masqued/masqued/geoegress/geohint", serverSide},
		{"github.com/masqued/masqued/privacypass", slices.Concat(serverSide, []string{
			"github.com/redis",
		})},
		{"github.com/masqued/masqued/cmd/masque-client/...", serverSide},
		{"github.com/masqued/masqued/h3proxy", []string{
			"github.com/masqued/masqued/interop",
			"github.com/masqued/masqued/h2proxy",
			"github.com/masqued/masqued/privacypass",
		}},
		{"github.com/masqued/masqued/privacypass/...", []string{ // satisfies the core's seams with standard-library types
			"github.com/masqued/masqued/tunnel",
			"github.com/masqued/masqued/h3proxy",
			"github.com/masqued/masqued/h2proxy",
			"github.com/quic-go/quic-go",
		}},
		{"github.com/masqued/masqued/internal/auth", []string{ // like privacypass: the core's seam, standard-library types
			"github.com/masqued/masqued/tunnel",
			"github.com/masqued/masqued/h3proxy",
			"github.com/masqued/masqued/h2proxy",
		}},
		{"github.com/masqued/masqued/internal/restart", []string{ // sockets only; it knows no front
			"github.com/masqued/masqued/tunnel",
			"github.com/masqued/masqued/h3proxy",
			"github.com/masqued/masqued/h2proxy",
		}},
		{"github.com/masqued/masqued/cmd/masqued", []string{
			"github.com/masqued/masqued/interop",
		}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-e", "-deps", r.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", r.pkg, err)
		}
		deps := strings.Fields(string(out))
		for _, d := range deps {
			for _, f := range r.forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s imports %s", r.pkg, d)
				}
			}
		}
	}
}
