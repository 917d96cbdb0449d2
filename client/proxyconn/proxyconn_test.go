package proxyconn

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/masqued/masqued/masque"
)

// scripted answers Authorize from a list and records the challenges.
type scripted struct {
	answers []string
	err     error
	seen    [][]string
}

func (s *scripted) Authorize(_ context.Context, challenges []string) (string, error) {
	s.seen = append(s.seen, challenges)
	if s.err != nil {
		return "", s.err
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a, nil
}

func TestDo(t *testing.T) {
	need := &ProxyError{StatusCode: http.StatusProxyAuthRequired, Challenges: []string{"PrivateToken challenge=abc"}}
	forbidden := &ProxyError{StatusCode: http.StatusForbidden}
	for _, tc := range []struct {
		name     string
		auth     *scripted
		results  []error // of the attempts, in turn
		wantErr  error
		wantSent []string
	}{
		{"no authorizer", nil, []error{need}, need, []string{""}},
		{"admitted at once", &scripted{answers: []string{"T1"}}, []error{nil}, nil, []string{"T1"}},
		{"retried after 407", &scripted{answers: []string{"", "T2"}}, []error{need, nil}, nil, []string{"", "T2"}},
		{"refused twice", &scripted{answers: []string{"", "bad"}}, []error{need, need}, need, []string{"", "bad"}},
		{"other refusals are not retried", &scripted{answers: []string{"T"}}, []error{forbidden}, forbidden, []string{"T"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent []string
			i := 0
			var a masque.Authorizer
			if tc.auth != nil {
				a = tc.auth
			}
			_, err := Do(context.Background(), a, func(authz string) (int, error) {
				sent = append(sent, authz)
				i++
				return i, tc.results[i-1]
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(sent, tc.wantSent) {
				t.Fatalf("sent %q, want %q", sent, tc.wantSent)
			}
			if tc.auth != nil && len(tc.auth.seen) > 1 && !slices.Equal(tc.auth.seen[1], need.Challenges) {
				t.Fatalf("second Authorize got %q, want the 407's challenges", tc.auth.seen[1])
			}
		})
	}
	t.Run("authorizer fails", func(t *testing.T) {
		boom := errors.New("no tokens")
		_, err := Do(context.Background(), &scripted{err: boom}, func(string) (int, error) {
			t.Fatal("attempted without credentials")
			return 0, nil
		})
		var ae *AuthError
		if !errors.As(err, &ae) || !errors.Is(err, boom) {
			t.Fatalf("err = %v, want an AuthError wrapping %v", err, boom)
		}
	})
}

func TestAuthority(t *testing.T) {
	for in, want := range map[string]string{
		"https://proxy.example":      "proxy.example:443",
		"https://proxy.example:4433": "proxy.example:4433",
		"https://[::1]:4433":         "[::1]:4433",
		"https://[::1]":              "[::1]:443",
	} {
		if got, err := Authority(in); err != nil || got != want {
			t.Errorf("Authority(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"http://proxy.example", "proxy.example:443", "https://", "::"} {
		if _, err := Authority(bad); err == nil {
			t.Errorf("Authority(%q) succeeded", bad)
		}
	}
}

// A caller's extra fields never replace the client's own, nor its
// Proxy-Authorization.
func TestSetRequestHeader(t *testing.T) {
	extra := http.Header{"sec-ch-geohash": {"u4pruy"}, "Capsule-Protocol": {"?0"}, "Proxy-Authorization": {"Basic forged"}, "X-A": {"1", "2"}}
	for _, authz := range []string{"", "PrivateToken token=abc"} {
		req := &http.Request{Header: http.Header{"Capsule-Protocol": {"?1"}}}
		SetRequestHeader(req, extra, authz)
		want := http.Header{"Sec-Ch-Geohash": {"u4pruy"}, "Capsule-Protocol": {"?1"}, "X-A": {"1", "2"}}
		if authz != "" {
			want.Set("Proxy-Authorization", authz)
		}
		if !reflect.DeepEqual(req.Header, want) {
			t.Errorf("authz %q: header %v, want %v", authz, req.Header, want)
		}
	}
	req := &http.Request{Header: http.Header{}}
	SetRequestHeader(req, extra, "")
	req.Header["X-A"][0] = "changed"
	if extra["X-A"][0] != "1" {
		t.Error("the request shares the caller's slices")
	}
}
