package resolver

import "testing"

// TestNewAddress: each way of naming a plain DNS server reaches the right
// address and port.
func TestNewAddress(t *testing.T) {
	for in, want := range map[string]string{
		"1.1.1.1":                     "1.1.1.1:53",
		"1.1.1.1:5353":                "1.1.1.1:5353",
		"2606:4700:4700::1111":        "[2606:4700:4700::1111]:53",
		"[2606:4700:4700::1111]:5353": "[2606:4700:4700::1111]:5353",
		"tcp://9.9.9.9":               "9.9.9.9:53",
		"tls://1.1.1.1":               "1.1.1.1:853",
	} {
		r, err := New(in, Options{})
		if err != nil {
			t.Errorf("New(%q): %v", in, err)
			continue
		}
		if got := r.ex.(*plainExchanger).addr; got != want {
			t.Errorf("New(%q) asks %s, want %s", in, got, want)
		}
	}
}
