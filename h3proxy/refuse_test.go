package h3proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/masqued/masqued/internal/testnet"
)

// TestRefusalLeavesUpstreamOpen: a refused CONNECT gets its status,
// Proxy-Status and message, and the client's side of the stream is not
// stopped under it (no STOP_SENDING), which Firefox takes for the tunnel
// failing before it reads the refusal; the client's ending its side ends
// the server's handler (goleak in TestMain checks).
func TestRefusalLeavesUpstreamOpen(t *testing.T) {
	p := startProxy(t, testnet.IPv4)
	c := p.dialRaw(t)
	rs, err := c.cc.OpenRequestStream(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.SendRequestHeader(connectRequest("no-port-here").WithContext(testContext(t))); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the refusal: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("Proxy-Status"), "error=http_request_error") || len(body) == 0 {
		t.Fatalf("got %s, Proxy-Status %q, body %q; want 400 with http_request_error and a message", resp.Status, resp.Header.Get("Proxy-Status"), body)
	}
	// The response and its end (FIN) are in; a STOP_SENDING sent with them
	// would have arrived too, and failed this write.
	if _, err := rs.Write([]byte("upstream")); err != nil {
		t.Fatalf("writing after the refusal: %v; want the upstream still open", err)
	}
	if err := rs.Close(); err != nil {
		t.Fatal(err)
	}
}
