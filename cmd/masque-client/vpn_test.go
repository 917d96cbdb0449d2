package main

import (
	"errors"
	"io"
	"testing"

	"github.com/masqued/masqued/internal/cli"
)

func TestVPNFlags(t *testing.T) {
	o, err := parseFlags([]string{"-proxy", "https://127.0.0.1:4433", "vpn", "-routes", "10.0.0.0/8,fd00::/8", "-tun", "t0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := o.vpn.path(); err != nil || p != "/.well-known/masque/ip/%2A/%2A/" {
		t.Errorf("path %q, %v", p, err)
	}
	if rs, _ := o.vpn.prefixes(); len(rs) != 2 || o.vpn.device != "t0" {
		t.Errorf("routes %v, device %q", rs, o.vpn.device)
	}
	for _, args := range [][]string{
		{"vpn"}, // no -proxy
		{"-proxy", "https://127.0.0.1:4433", "vpn", "extra"},
		{"-proxy", "https://127.0.0.1:4433", "vpn", "-routes", "10.0.0.0/33"},
		{"-proxy", "https://127.0.0.1:4433", "-via", "h1", "vpn"},
		{"-proxy", "https://127.0.0.1:4433,https://127.0.0.1:4434", "vpn"},
		{"-proxy", "https://127.0.0.1:4433", "vpn", "-ip-template", "http://x/"},
	} {
		_, err := parseFlags(args, io.Discard)
		var u *cli.UsageError
		if !errors.As(err, &u) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
