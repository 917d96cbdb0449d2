package testnet

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/xconnect"
)

// MainHTTP2 is the TestMain of a package whose tests serve the HTTP/2 front:
// it re-executes the test binary with extended CONNECT turned on
// (xconnect.Enable), then runs the tests and fails them on leaked goroutines
// (goleak, with opts).
func MainHTTP2(m *testing.M, opts ...goleak.Option) {
	if err := xconnect.Enable(); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m, opts...)
}
