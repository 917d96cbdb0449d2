package proxyconn

import "testing"

func TestPacketBuffers(t *testing.T) {
	for _, n := range []int{0, 1, smallPacket, smallPacket + 1, largePacket} {
		b := GetPacket(n)
		if len(*b) != n || cap(*b) < n {
			t.Errorf("GetPacket(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		PutPacket(b)
	}
	if raceEnabled {
		return
	}
	// Steady use allocates nothing.
	if allocs := testing.AllocsPerRun(1000, func() {
		PutPacket(GetPacket(1200))
		PutPacket(GetPacket(9000))
	}); allocs != 0 {
		t.Errorf("%v allocations per get and put", allocs)
	}
}

func TestUDPDatagram(t *testing.T) {
	b := UDPDatagram([]byte("ping"))
	defer PutPacket(b)
	if got := string((*b)[UDPHeadroom:]); got != "\x00ping" {
		t.Fatalf("payload %q, want Context ID 0 then ping", got)
	}
}
