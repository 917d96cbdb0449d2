package runner

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBrokenServerTurnsCellsRed runs masque-client's cells of three cases
// against masqued twice: as it is, when every cell passes, and with
// -interop-break capsules, a masqued that ignores DATAGRAM capsules. Then
// exactly the cells whose UDP payloads travel in capsules must fail:
// capsule-fallback over every transport, and HTTP/3 in CONNECT-UDP over
// HTTP/2 and HTTP/1.1 (which have no datagrams); CONNECT and CONNECT-UDP
// over QUIC datagrams must still pass.
func TestBrokenServerTurnsCellsRed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs masqued and masque-client")
	}
	run := regexp.MustCompile(`^(connect-tcp|h3-over-connect-udp|capsule-fallback)/masque-client/h[123]/masqued$`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name  string
		args  []string
		fails []string
	}{
		{"sound", nil, nil},
		{"capsules broken", []string{"-interop-break", "capsules"}, []string{
			"h3-over-connect-udp/masque-client/h2/masqued",
			"h3-over-connect-udp/masque-client/h1/masqued",
			"capsule-fallback/masque-client/h3/masqued",
			"capsule-fallback/masque-client/h2/masqued",
			"capsule-fallback/masque-client/h1/masqued",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			r, err := Run(ctx, Config{OutDir: out, Run: run, MasquedArgs: tc.args})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Cells) != 9 {
				t.Fatalf("ran %d cells, want 9", len(r.Cells))
			}
			var failed []string
			for _, c := range r.Failed() {
				failed = append(failed, c.Name())
			}
			if strings.Join(failed, " ") != strings.Join(tc.fails, " ") {
				var b strings.Builder
				r.Matrix(&b)
				t.Fatalf("failed cells %q, want %q\n%s", failed, tc.fails, b.String())
			}
			for _, name := range []string{"results.json", "results.md"} {
				if _, err := os.Stat(filepath.Join(out, name)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
