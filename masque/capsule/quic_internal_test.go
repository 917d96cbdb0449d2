package capsule

import (
	"fmt"
	"testing"

	"github.com/quic-go/quic-go"
)

// TestTooLargeNoAlloc: the check that runs after every SendDatagram costs no
// allocation when the send succeeded.
func TestTooLargeNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(1000, func() { tooLarge(nil) }); n != 0 {
		t.Errorf("tooLarge(nil) allocates %v times", n)
	}
	if !tooLarge(fmt.Errorf("wrapped: %w", &quic.DatagramTooLargeError{MaxDatagramPayloadSize: 1200})) {
		t.Error("tooLarge missed a wrapped DatagramTooLargeError")
	}
}
