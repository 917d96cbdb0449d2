package privacypass

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// Scheme is the HTTP authentication scheme of RFC 9577.
const Scheme = "PrivateToken"

// Challenge is one PrivateToken challenge (RFC 9577 §2.1) as it travels in
// WWW-Authenticate or Proxy-Authenticate.
type Challenge struct {
	TokenChallenge TokenChallenge
	Raw            []byte // the encoded TokenChallenge, whose SHA-256 a token carries
	TokenKey       []byte // the issuer key; nil when the challenge omits it
	MaxAge         int    // seconds the challenge is accepted; -1 when absent
}

// String formats c as an auth-scheme challenge, with padded base64url in
// quoted strings as RFC 9577 asks.
func (c *Challenge) String() string {
	var b strings.Builder
	b.WriteString(Scheme + ` challenge="`)
	b.WriteString(base64.URLEncoding.EncodeToString(c.Raw))
	b.WriteByte('"')
	if c.TokenKey != nil {
		b.WriteString(`, token-key="`)
		b.WriteString(base64.URLEncoding.EncodeToString(c.TokenKey))
		b.WriteByte('"')
	}
	if c.MaxAge >= 0 {
		b.WriteString(", max-age=")
		b.WriteString(strconv.Itoa(c.MaxAge))
	}
	return b.String()
}

// ParseChallenges returns the well-formed PrivateToken challenges in the
// given WWW-Authenticate or Proxy-Authenticate field values, in order.
// Challenges of other schemes, unknown parameters and malformed challenges
// are skipped, as a client must ignore what it cannot use; token types are
// not filtered (a greased type is the caller's to ignore).
func ParseChallenges(values []string) []Challenge {
	var out []Challenge
	for _, v := range values {
		for _, it := range parseAuth(v) {
			if !strings.EqualFold(it.scheme, Scheme) || it.broken {
				continue
			}
			c := Challenge{MaxAge: -1}
			raw, ok := decodeParam(it.params, "challenge")
			if !ok || c.TokenChallenge.UnmarshalBinary(raw) != nil {
				continue
			}
			c.Raw = raw
			if _, present := it.params["token-key"]; present {
				if c.TokenKey, ok = decodeParam(it.params, "token-key"); !ok {
					continue
				}
			}
			if s, present := it.params["max-age"]; present {
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					continue
				}
				c.MaxAge = n
			}
			out = append(out, c)
		}
	}
	return out
}

// FormatCredentials is the Authorization or Proxy-Authorization value that
// presents token (RFC 9577 §2.2.1).
func FormatCredentials(token []byte) string {
	return Scheme + ` token="` + base64.URLEncoding.EncodeToString(token) + `"`
}

// ErrNoCredentials means a field value holds no PrivateToken credentials.
var ErrNoCredentials = errors.New("privacypass: no PrivateToken credentials")

// ParseCredentials returns the encoded token of a PrivateToken credential
// in an Authorization or Proxy-Authorization value. Unknown parameters are
// ignored.
func ParseCredentials(value string) ([]byte, error) {
	for _, it := range parseAuth(value) {
		if !strings.EqualFold(it.scheme, Scheme) {
			continue
		}
		if it.broken {
			return nil, malformed("credentials")
		}
		tok, ok := decodeParam(it.params, "token")
		if !ok {
			return nil, malformed("credentials: token parameter")
		}
		return tok, nil
	}
	return nil, ErrNoCredentials
}

// decodeParam decodes the base64url parameter name, padded or not.
func decodeParam(params map[string]string, name string) ([]byte, bool) {
	v, ok := params[name]
	if !ok || v == "" {
		return nil, false
	}
	b, err := decodeBase64URL(v)
	return b, err == nil
}

// decodeBase64URL decodes base64url with or without padding: RFC 9577 asks
// for padding, and not every peer sends it. Line breaks, which
// encoding/base64 skips, are refused, as is an empty value.
func decodeBase64URL(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return nil, errBase64
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

var errBase64 = errors.New("privacypass: not base64url")

// authItem is one challenge or credential of an auth header: a scheme and
// its parameters, names lower-cased. broken marks one with a syntax error
// or a repeated parameter, to be ignored.
type authItem struct {
	scheme string
	params map[string]string
	broken bool
}

// parseAuth splits a WWW-Authenticate, Proxy-Authenticate, Authorization or
// Proxy-Authorization value into schemes and auth-params (RFC 9110 §11).
// It never fails: after a syntax error it resumes at the next comma with
// the current item marked broken. A token68 is skipped.
func parseAuth(s string) []authItem {
	var items []authItem
	cur := -1
	broke := func() {
		if cur >= 0 {
			items[cur].broken = true
		}
		for len(s) > 0 && s[0] != ',' { // a quoted comma is lost: the item is broken anyway
			s = s[1:]
		}
	}
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return items
		}
		name := leadingToken(s)
		if name == "" {
			broke()
			continue
		}
		s = strings.TrimLeft(s[len(name):], " \t")
		if !strings.HasPrefix(s, "=") {
			items = append(items, authItem{scheme: name, params: map[string]string{}})
			cur = len(items) - 1
			continue
		}
		s = strings.TrimLeft(s[1:], " \t")
		var value string
		switch {
		case strings.HasPrefix(s, `"`):
			v, rest, ok := quotedString(s)
			if !ok {
				broke()
				continue
			}
			value, s = v, rest
		case s == "" || s[0] == ',' || s[0] == '=':
			// name followed by '='s: a token68 such as "abc==".
			s = strings.TrimLeft(s, "=")
			continue
		default:
			value = leadingToken(s)
			s = s[len(value):]
			// Accept base64 padding left unquoted.
			for len(s) > 0 && s[0] == '=' {
				value += "="
				s = s[1:]
			}
		}
		if rest := strings.TrimLeft(s, " \t"); rest != "" && rest[0] != ',' {
			s = rest
			broke()
			continue
		}
		if cur < 0 {
			continue // a parameter before any scheme
		}
		key := strings.ToLower(name)
		if _, dup := items[cur].params[key]; dup {
			items[cur].broken = true
		}
		items[cur].params[key] = value
	}
}

// leadingToken is the longest prefix of s made of tchar (RFC 9110 §5.6.2).
func leadingToken(s string) string {
	i := 0
	for i < len(s) && isTchar(s[i]) {
		i++
	}
	return s[:i]
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// quotedString reads the quoted-string at the start of s (RFC 9110 §5.6.4)
// and returns its unescaped value and what follows it.
func quotedString(s string) (value, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}
