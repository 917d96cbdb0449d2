package load

import (
	"strings"
	"testing"
)

// The error type read from a Proxy-Status field is one token: it keys the
// report's breakdown.
func FuzzProxyStatusError(f *testing.F) {
	for _, s := range []string{
		"masqued; error=dns_error; rcode=\"NXDOMAIN\"",
		"a; error=x, b; error=y",
		"masqued;error=\"connection_refused\"",
		"; = , ;error=",
		"masqued; error",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		kind := proxyStatusError(field)
		if strings.ContainsAny(kind, ",;") || !strings.Contains(field, kind) {
			t.Errorf("proxyStatusError(%q) = %q", field, kind)
		}
	})
}

// /proc status of any shape parses without panicking, and what it reports
// was in it.
func FuzzParseProcStatus(f *testing.F) {
	f.Add([]byte("Name:\tmasqued\nVmRSS:\t   12345 kB\nThreads:\t7\n"))
	f.Add([]byte("VmRSS:\nThreads:\t\nVmRSS: -1 kB\nThreads: 99999999999999999999\n"))
	f.Add([]byte(":\n::\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseProcStatus(b)
		if err == nil && !strings.Contains(string(b), "VmRSS") {
			t.Errorf("parsed %+v from a status without VmRSS", s)
		}
	})
}
