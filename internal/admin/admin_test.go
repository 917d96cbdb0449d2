package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHandler: /readyz follows the state, /healthz always answers, /metrics
// serves the registry given, and nothing else is there.
func TestHandler(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "masqued_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	var st State
	srv := httptest.NewServer(Handler(reg, &st))
	defer srv.Close()
	defer http.DefaultClient.CloseIdleConnections()

	for _, tc := range []struct {
		state int32
		code  int
		body  string
	}{{Starting, 503, "starting\n"}, {Ready, 200, "ready\n"}, {Draining, 503, "draining\n"}} {
		st.Set(tc.state)
		if code, body := get(t, srv.URL+"/readyz"); code != tc.code || body != tc.body {
			t.Errorf("/readyz: %d %q, want %d %q", code, body, tc.code, tc.body)
		}
		if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
			t.Errorf("/healthz: %d", code)
		}
	}
	if code, body := get(t, srv.URL+"/metrics"); code != 200 || !strings.Contains(body, "masqued_test_total 3") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	if code, _ := get(t, srv.URL+"/"); code != 404 {
		t.Errorf("/: %d, want 404", code)
	}
}
