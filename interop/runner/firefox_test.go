package runner

import "testing"

// TestNeterror: the code Firefox's error page names, as Marionette reports
// a navigation that ended on one.
func TestNeterror(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"Reached error page: about:neterror?e=proxyConnectFailure&u=https%3A//127.0.0.1%3A1/c1/page&c=UTF-8&d=The%20proxy", "proxyConnectFailure"},
		{"Reached error page: about:neterror?e=dnsNotFound&u=https%3A//example.com/", "dnsNotFound"},
		{"Reached error page: about:neterror?u=x", "Reached error page: about:neterror?u=x"},
		{"navigation timed out", "navigation timed out"},
	} {
		if got := neterror(tc.msg); got != tc.want {
			t.Errorf("neterror(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
