package runner

import (
	"strings"
	"testing"
)

// TestSupport checks the support table where it is easy to get wrong: what
// masque-go's proxy lacks, and the clients that cannot speak CONNECT-UDP.
func TestSupport(t *testing.T) {
	for _, tc := range []struct {
		cell, why string // why == "": supported
	}{
		{"h3-over-connect-udp/masque-go/masque-go", ""},
		{"connect-udp/masque-client/h3/masque-go", ""},
		{"bad-template/masque-client/h3/masque-go", ""},
		{"connect-udp/masque-client/h2/masque-go", "masque-go lacks an HTTP/2 front"},
		{"capsule-fallback/masque-client/h3/masque-go", "masque-go lacks DATAGRAM capsules"},
		{"connect-tcp/curl/masque-go", "masque-go lacks an HTTP/2 front, CONNECT"},
		{"auth-missing/masque-client/h3/masque-go", "masque-go lacks Privacy Pass"},
		{"connect-udp/curl/masqued", "curl has no way to play connect-udp"},
		{"browser-page/chromium/masqued", ""},
		{"browser-page/curl/masqued", "curl has no way"},
		{"auth-replay/curl/masqued", ""},
		{"many-tunnels/masque-go/masque-go", ""},
		{"many-tunnels/masque-client/h3/masque-go", "masque-go lacks CONNECT"},
		{"two-hop/masque-client/h3/masque-go", ""},
		{"two-hop/masque-go/masque-go", ""},
		{"two-hop/masque-client/h1/masqued", ""},
		{"two-hop/masque-client/h2/masque-go", "masque-go lacks an HTTP/2 front"},
		{"two-hop/curl/masqued", "curl has no way to play two-hop"},
	} {
		parts := strings.SplitN(tc.cell, "/", 2)
		i := strings.LastIndex(parts[1], "/")
		cell := &Cell{Case: parts[0], Client: parts[1][:i], Server: parts[1][i+1:]}
		c, cl, sv := lookup(cell)
		if c == nil || cl == nil || sv == nil {
			t.Fatalf("%s: no such case, client or server", tc.cell)
		}
		why := unsupported(c, cl, sv)
		if (why == "") != (tc.why == "") || !strings.HasPrefix(why, tc.why) {
			t.Errorf("%s: unsupported %q, want %q", tc.cell, why, tc.why)
		}
	}
}

// A two-hop cell runs a masqued relay in front of whichever server it has.
func TestProgramsOfTwoHop(t *testing.T) {
	for _, tc := range []struct {
		cell Cell
		want string
	}{
		{Cell{Case: "two-hop", Client: "masque-go", Server: "masque-go"}, "masquego masqued masquego"},
		{Cell{Case: "two-hop", Client: "masque-client/h3", Server: "masqued"}, "masque-client masqued masqued"},
		{Cell{Case: "connect-udp", Client: "masque-go", Server: "masque-go"}, "masquego masquego"},
	} {
		if got := strings.Join(programs(tc.cell), " "); got != tc.want {
			t.Errorf("programs(%s) = %s, want %s", tc.cell.Name(), got, tc.want)
		}
	}
}
