package quicproxy

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Header field names and transform names (draft §Proxy-QUIC-Forwarding Header,
// §Packet Transforms).
const (
	HeaderForwarding  = "Proxy-QUIC-Forwarding"
	HeaderPortSharing = "Proxy-QUIC-Port-Sharing"
	TransformIdentity = "identity"
	TransformScramble = "scramble-dt" // the draft's name until the final "scramble"
)

// The parameter names of Proxy-QUIC-Forwarding.
const (
	paramAcceptTransform = "accept-transform"
	paramTransform       = "transform"
	paramScrambleKey     = "scramble-key"
)

// scrambleKeyLen is the length of a scramble transform key (draft §The
// scramble transform): two AES-128 keys.
const scrambleKeyLen = 32

// Forwarding is a Proxy-QUIC-Forwarding value (an RFC 8941 Item: Boolean with
// parameters). The client fills AcceptTransforms, the proxy Transform; each
// side sends the ScrambleKey it scrambles with, and unscrambles with the one it
// receives.
type Forwarding struct {
	Enabled          bool     // the item: ?1 / ?0
	AcceptTransforms []string // client: accept-transform, an sf-string of comma-separated names in preference order
	Transform        string   // proxy: transform, an sf-string
	ScrambleKey      []byte   // scramble-key, an sf-binary (32 bytes when present and valid)
}

// ParseForwarding parses a header value strictly per RFC 8941: booleans ?0 and
// ?1, parameter keys lowercase, sf-string escapes, sf-binary base64 between
// colons; unknown parameters are ignored; a duplicate parameter's last value
// wins, as RFC 8941 says; a non-boolean item is an error. Failures wrap
// ErrMalformed.
//
// The draft's parameters are checked for their types (accept-transform and
// transform are Strings, scramble-key a Byte Sequence) since a value of
// another type has no meaning, and scramble-key must be 32 bytes: the draft
// disables forwarded mode without a usable key, and an error here is how a
// caller learns that. accept-transform's names are trimmed of spaces and empty
// names dropped, so "a, b" and "a,,b" both offer a and b.
//
// Which side may send which parameter is the caller's to enforce: the draft
// has each side ignore the other's (a proxy ignores transform, a client
// accept-transform).
func ParseForwarding(v string) (Forwarding, error) {
	var f Forwarding
	var accept, transform, key *bareItem
	enabled, err := parseBooleanItem(v, func(k string, it bareItem) {
		switch k {
		case paramAcceptTransform:
			accept = &it
		case paramTransform:
			transform = &it
		case paramScrambleKey:
			key = &it
		}
	})
	if err != nil {
		return Forwarding{}, err
	}
	f.Enabled = enabled
	if accept != nil {
		if accept.kind != kindString {
			return Forwarding{}, paramTypeError(paramAcceptTransform, "a String", accept.kind)
		}
		for name := range strings.SplitSeq(accept.str, ",") {
			if name = strings.Trim(name, " \t"); name != "" {
				f.AcceptTransforms = append(f.AcceptTransforms, name)
			}
		}
	}
	if transform != nil {
		if transform.kind != kindString {
			return Forwarding{}, paramTypeError(paramTransform, "a String", transform.kind)
		}
		f.Transform = transform.str
	}
	if key != nil {
		if key.kind != kindBinary {
			return Forwarding{}, paramTypeError(paramScrambleKey, "a Byte Sequence", key.kind)
		}
		if len(key.bin) != scrambleKeyLen {
			return Forwarding{}, fmt.Errorf("%w %s: %s is %d bytes, not %d", ErrMalformed, HeaderForwarding,
				paramScrambleKey, len(key.bin), scrambleKeyLen)
		}
		f.ScrambleKey = key.bin
	}
	return f, nil
}

func paramTypeError(key, want string, got itemKind) error {
	return fmt.Errorf("%w %s: %s is %s, not %s", ErrMalformed, HeaderForwarding, key, got, want)
}

// String serializes f per RFC 8941: only the non-empty parameters, in the
// order accept-transform, transform, scramble-key, with no spaces (RFC 8941
// §4.1.1.2) and the key in padded base64. A byte a String cannot hold
// (outside printable ASCII) is written as '?', so the result is always a valid
// field value.
func (f Forwarding) String() string {
	var b strings.Builder
	if f.Enabled {
		b.WriteString("?1")
	} else {
		b.WriteString("?0")
	}
	if len(f.AcceptTransforms) > 0 {
		b.WriteString(";" + paramAcceptTransform + "=")
		b.WriteString(sfString(strings.Join(f.AcceptTransforms, ",")))
	}
	if f.Transform != "" {
		b.WriteString(";" + paramTransform + "=")
		b.WriteString(sfString(f.Transform))
	}
	if len(f.ScrambleKey) > 0 {
		b.WriteString(";" + paramScrambleKey + "=:")
		b.WriteString(base64.StdEncoding.EncodeToString(f.ScrambleKey))
		b.WriteByte(':')
	}
	return b.String()
}

// sfString quotes s as an sf-string (RFC 8941 §4.1.6).
func sfString(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
	return `"` + sfEscaper.Replace(s) + `"`
}

var sfEscaper = strings.NewReplacer(`"`, `\"`, `\`, `\\`)

// ParsePortSharing parses a Proxy-QUIC-Port-Sharing value (a Boolean item;
// parameters ignored, though they must be well-formed). Failures wrap
// ErrMalformed.
func ParsePortSharing(v string) (bool, error) {
	return parseBooleanItem(v, func(string, bareItem) {})
}

// itemKind is the type of an RFC 8941 bare item.
type itemKind uint8

const (
	kindInteger itemKind = iota
	kindDecimal
	kindString
	kindToken
	kindBinary
	kindBoolean
)

func (k itemKind) String() string {
	return [...]string{"an Integer", "a Decimal", "a String", "a Token", "a Byte Sequence", "a Boolean"}[k]
}

// bareItem is a parsed bare item: str holds a String's or Token's text, bin a
// Byte Sequence, boolean a Boolean; numbers are checked but not kept, since no
// parameter of the draft is one.
type bareItem struct {
	kind    itemKind
	str     string
	bin     []byte
	boolean bool
}

// sfParser parses one field value, RFC 8941 §4.2, over s from pos.
type sfParser struct {
	s   string
	pos int
}

func (p *sfParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w structured field: %s at offset %d", ErrMalformed, fmt.Sprintf(format, args...), p.pos)
}

func (p *sfParser) skipSP() {
	for p.pos < len(p.s) && p.s[p.pos] == ' ' {
		p.pos++
	}
}

func (p *sfParser) peek() (byte, bool) {
	if p.pos >= len(p.s) {
		return 0, false
	}
	return p.s[p.pos], true
}

// parseBooleanItem parses v as an Item whose bare item is a Boolean and hands
// each parameter, in order, to param (RFC 8941 §4.2: leading and trailing
// spaces, but no other whitespace, around the item; §4.2.3). A later call for
// the same key is the later value, so a caller that keeps the last one gets
// RFC 8941's "overwrite".
func parseBooleanItem(v string, param func(key string, value bareItem)) (bool, error) {
	p := sfParser{s: v}
	p.skipSP()
	if c, ok := p.peek(); !ok || c != '?' {
		if !ok {
			return false, p.errorf("empty value")
		}
		return false, p.errorf("the item is not a Boolean")
	}
	it, err := p.bare()
	if err != nil {
		return false, err
	}
	if err := p.parameters(param); err != nil {
		return false, err
	}
	p.skipSP()
	if p.pos != len(p.s) {
		return false, p.errorf("unexpected %q", p.s[p.pos])
	}
	return it.boolean, nil
}

// parameters parses RFC 8941 §4.2.3.2 parameters.
func (p *sfParser) parameters(param func(string, bareItem)) error {
	for {
		if c, ok := p.peek(); !ok || c != ';' {
			return nil
		}
		p.pos++
		p.skipSP()
		key, err := p.key()
		if err != nil {
			return err
		}
		value := bareItem{kind: kindBoolean, boolean: true}
		if c, ok := p.peek(); ok && c == '=' {
			p.pos++
			if value, err = p.bare(); err != nil {
				return err
			}
		}
		param(key, value)
	}
}

// key parses RFC 8941 §4.2.3.3: lcalpha or "*", then lcalpha, DIGIT, "_",
// "-", "." or "*".
func (p *sfParser) key() (string, error) {
	start := p.pos
	if c, ok := p.peek(); !ok || !isLCAlpha(c) && c != '*' {
		return "", p.errorf("a parameter key must start with a lowercase letter or '*'")
	}
	for p.pos++; p.pos < len(p.s); p.pos++ {
		c := p.s[p.pos]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
	}
	return p.s[start:p.pos], nil
}

// bare parses a bare item, RFC 8941 §4.2.3.1.
func (p *sfParser) bare() (bareItem, error) {
	c, ok := p.peek()
	switch {
	case !ok:
		return bareItem{}, p.errorf("missing value")
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return p.sfString()
	case c == '*' || isAlpha(c):
		return p.token(), nil
	case c == ':':
		return p.byteSequence()
	case c == '?':
		return p.boolean()
	}
	return bareItem{}, p.errorf("%q starts no item", c)
}

// number parses RFC 8941 §4.2.4: an Integer of at most 15 digits, or a Decimal
// of at most 12 digits before the point and 1 to 3 after.
func (p *sfParser) number() (bareItem, error) {
	if p.s[p.pos] == '-' {
		p.pos++
	}
	if c, ok := p.peek(); !ok || !isDigit(c) {
		return bareItem{}, p.errorf("a number needs a digit")
	}
	kind, digits, point := kindInteger, 0, -1
	for ; p.pos < len(p.s); p.pos++ {
		c := p.s[p.pos]
		if isDigit(c) {
			digits++
		} else if kind == kindInteger && c == '.' {
			if digits > 12 {
				return bareItem{}, p.errorf("more than 12 digits before a decimal point")
			}
			kind, point = kindDecimal, digits
		} else {
			break
		}
		if kind == kindInteger && digits > 15 {
			return bareItem{}, p.errorf("an integer of more than 15 digits")
		}
		if kind == kindDecimal && digits+1 > 16 {
			return bareItem{}, p.errorf("a decimal of more than 16 characters")
		}
	}
	if kind == kindDecimal {
		if frac := digits - point; frac < 1 || frac > 3 {
			return bareItem{}, p.errorf("a decimal needs 1 to 3 digits after the point")
		}
	}
	return bareItem{kind: kind}, nil
}

// sfString parses RFC 8941 §4.2.5: printable ASCII between quotes, with only
// '"' and '\' escaped.
func (p *sfParser) sfString() (bareItem, error) {
	p.pos++ // the opening quote
	var b strings.Builder
	for start := p.pos; p.pos < len(p.s); p.pos++ {
		switch c := p.s[p.pos]; {
		case c == '"':
			b.WriteString(p.s[start:p.pos])
			p.pos++
			return bareItem{kind: kindString, str: b.String()}, nil
		case c == '\\':
			b.WriteString(p.s[start:p.pos])
			p.pos++
			if p.pos == len(p.s) || p.s[p.pos] != '"' && p.s[p.pos] != '\\' {
				return bareItem{}, p.errorf("a String may escape only '\"' and '\\'")
			}
			start = p.pos // the escaped character is kept with what follows
		case c < 0x20 || c > 0x7e:
			return bareItem{}, p.errorf("a String holds only printable ASCII")
		}
	}
	return bareItem{}, p.errorf("a String without its closing quote")
}

// token parses RFC 8941 §4.2.6: tchar, ":" or "/" after the first character,
// which bare has checked.
func (p *sfParser) token() bareItem {
	start := p.pos
	for p.pos++; p.pos < len(p.s); p.pos++ {
		if c := p.s[p.pos]; !isTChar(c) && c != ':' && c != '/' {
			break
		}
	}
	return bareItem{kind: kindToken, str: p.s[start:p.pos]}
}

// byteSequence parses RFC 8941 §4.2.7: base64 between colons. As the RFC
// advises, missing "=" padding and non-zero pad bits are accepted; padding
// that is there must be whole.
func (p *sfParser) byteSequence() (bareItem, error) {
	p.pos++ // the opening colon
	end := strings.IndexByte(p.s[p.pos:], ':')
	if end < 0 {
		return bareItem{}, p.errorf("a Byte Sequence without its closing colon")
	}
	b64 := p.s[p.pos : p.pos+end]
	for i := 0; i < len(b64); i++ {
		if c := b64[i]; !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' && c != '=' {
			return bareItem{}, p.errorf("%q in a Byte Sequence", c)
		}
	}
	enc := base64.StdEncoding
	if len(b64)%4 != 0 {
		enc = base64.RawStdEncoding // unpadded; a stray "=" fails to decode
	}
	bin, err := enc.DecodeString(b64)
	if err != nil {
		return bareItem{}, p.errorf("a Byte Sequence that is not base64")
	}
	p.pos += end + 1
	return bareItem{kind: kindBinary, bin: bin}, nil
}

// boolean parses RFC 8941 §4.2.8: "?0" or "?1".
func (p *sfParser) boolean() (bareItem, error) {
	p.pos++ // the '?'
	c, ok := p.peek()
	if !ok || c != '0' && c != '1' {
		return bareItem{}, p.errorf("a Boolean is ?0 or ?1")
	}
	p.pos++
	return bareItem{kind: kindBoolean, boolean: c == '1'}, nil
}

func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool   { return isLCAlpha(c) || c >= 'A' && c <= 'Z' }

// isTChar reports whether c is a token character (RFC 9110 §5.6.2).
func isTChar(c byte) bool {
	return isAlpha(c) || isDigit(c) || c < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
