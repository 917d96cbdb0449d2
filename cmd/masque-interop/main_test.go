package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/masqued/masqued/internal/cli"
)

func TestList(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), []string{"-list"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"capsule-fallback ", "browser-page ", "clients: masque-client/h3,", "servers: masqued, masque-go"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-list lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-run", "("},
		{"-run", "curl", "-readme", "README.md"},
		{"extra"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		var u *cli.UsageError
		if !errors.As(err, &u) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
